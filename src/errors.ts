// Errors the user can act on: printed as their message alone (one line per problem), exit status 2.
export class UsageError extends Error {
  constructor(
    message: string,
    readonly problems: string[] = [message],
  ) {
    super(message);
  }
}
