#!/usr/bin/perl
# The debhelper sequence add-on of dh-nocow (dh-sequence-nocow): dh_nocow runs before
# dh_installtmpfiles, which then activates the tmpfiles.d snippets dh_nocow installs as it
# activates a package's own. Compat 13 and later: before it that step is dh_installsystemd's,
# and dh_nocow would silently not run.
use strict;
use warnings;
use Debian::Debhelper::Dh_Lib qw(compat error);

error('dh-sequence-nocow needs debhelper compat level 13 or later') if compat(12);

insert_before('dh_installtmpfiles', 'dh_nocow');

1;
