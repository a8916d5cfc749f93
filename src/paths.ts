// Where the package's own files are, from src/ under tests and from dist/ when built.
import { fileURLToPath } from 'node:url';

export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const TEMPLATE_DIR = fileURLToPath(new URL('../templates/', import.meta.url));
