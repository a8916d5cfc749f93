# --- nocow-kit shell library: the one implementation of the on-disk logic ---
# POSIX sh (dash, bash, busybox ash). Every function returns normally: the caller
# is an RPM scriptlet or an installer section, which a failure must never break.
# Internal variables start with _nc_ (POSIX sh has no `local`).

# nocow_init ROOT: make every target path relative to ROOT ("/" for the running system).
nocow_init() {
	_nc_top=${1%/}
	_nc_nl='
'
	_nc_disabled_said=
	PATH=/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
}

# nocow_say NAME MESSAGE: one line on stdout for one change made.
nocow_say() {
	printf 'nocow: %s: %s\n' "$1" "$2"
}

# nocow_warn MESSAGE: one line on stderr for one problem of the current target.
nocow_warn() {
	printf 'nocow: %s: warning: %s\n' "$_nc_name" "$1" >&2
}

# nocow_try MESSAGE COMMAND…: run COMMAND quietly; on failure warn once with its first error line.
nocow_try() {
	_nc_msg=$1
	shift
	if _nc_err=$("$@" 2>&1 >/dev/null); then
		return 0
	fi
	nocow_warn "$_nc_msg: ${_nc_err%%"$_nc_nl"*}"
	return 1
}

# nocow_masked FILE: true when FILE masks a tmpfiles snippet (a link to /dev/null, or empty).
nocow_masked() {
	[ -c "$1" ] && return 0
	[ -f "$1" ] && [ ! -s "$1" ]
}

# nocow_resolve: when an existing component of the path is a symlink, replace _nc_path
# by its real path; false (with a warning) when that real path leaves the root.
nocow_resolve() {
	_nc_walk=$_nc_top
	_nc_rest=${_nc_rel#/}
	while [ -n "$_nc_rest" ]; do
		_nc_walk=$_nc_walk/${_nc_rest%%/*}
		case $_nc_rest in
		*/*) _nc_rest=${_nc_rest#*/} ;;
		*) _nc_rest= ;;
		esac
		[ -L "$_nc_walk" ] && break
		[ -e "$_nc_walk" ] || return 0
	done
	[ -L "$_nc_walk" ] || return 0
	if ! _nc_real=$(realpath -m -- "$_nc_path" 2>/dev/null) || [ -z "$_nc_real" ]; then
		nocow_warn "cannot resolve the symlink $_nc_walk; left alone"
		return 1
	fi
	case $_nc_real in
	"$_nc_top"/?*) ;;
	*)
		nocow_warn "$_nc_walk is a symlink leading out of ${_nc_top:-/}; left alone"
		return 1
		;;
	esac
	_nc_path=$_nc_real
}

# nocow_repair: finish or undo a conversion that was interrupted; never removes anything holding data.
nocow_repair() {
	if [ ! -e "$_nc_path" ] && [ ! -L "$_nc_path" ] && [ -d "$_nc_old" ]; then
		if [ -d "$_nc_new" ]; then
			nocow_try "cannot complete an interrupted conversion" mv -T -- "$_nc_new" "$_nc_path" &&
				nocow_say "$_nc_name" "completed an interrupted conversion of $_nc_path"
		else
			nocow_try "cannot restore $_nc_path from $_nc_old" mv -T -- "$_nc_old" "$_nc_path" &&
				nocow_say "$_nc_name" "restored $_nc_path after an interrupted conversion"
		fi
	fi
	if [ -d "$_nc_new" ] && [ -e "$_nc_path" ]; then
		if rmdir -- "$_nc_new" 2>/dev/null; then
			nocow_say "$_nc_name" "removed $_nc_new left by an interrupted conversion"
		else
			nocow_warn "$_nc_new is left from an interrupted conversion but is not empty; left alone"
		fi
	fi
	if [ -d "$_nc_old" ] && [ -e "$_nc_path" ]; then
		if rmdir -- "$_nc_old" 2>/dev/null; then
			nocow_say "$_nc_name" "removed $_nc_old left by an interrupted conversion"
		else
			nocow_warn "$_nc_old is left from an interrupted conversion but is not empty; left alone"
		fi
	fi
}

# nocow_ancestor: set _nc_anc to the path itself or its nearest existing ancestor.
nocow_ancestor() {
	_nc_anc=$_nc_path
	while [ ! -e "$_nc_anc" ]; do
		_nc_anc=${_nc_anc%/*}
		if [ -z "$_nc_anc" ]; then
			_nc_anc=/
			return 0
		fi
	done
}

# nocow_empty DIR: true when DIR has no entries, hidden ones included (no process started).
nocow_empty() {
	for _nc_entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		if [ -e "$_nc_entry" ] || [ -L "$_nc_entry" ]; then
			return 1
		fi
	done
	return 0
}

# nocow_lookup_id DB NAME: set _nc_id to NAME's numeric id in DB (the root's passwd or group file).
nocow_lookup_id() {
	case $2 in
	root)
		_nc_id=0
		return 0
		;;
	*[!0-9]*) ;;
	*)
		_nc_id=$2
		return 0
		;;
	esac
	[ -r "$1" ] || return 1
	while IFS=: read -r _nc_dbname _nc_dbpass _nc_dbid _nc_dbrest; do
		if [ "$_nc_dbname" = "$2" ]; then
			_nc_id=$_nc_dbid
			return 0
		fi
	done <"$1"
	return 1
}

# nocow_owner: set _nc_owner to USER:GROUP as the root sees them (numeric when the root is not /).
nocow_owner() {
	if [ -z "$_nc_top" ]; then
		_nc_owner=$_nc_user:$_nc_group
		return 0
	fi
	if ! nocow_lookup_id "$_nc_top/etc/passwd" "$_nc_user"; then
		nocow_warn "user $_nc_user is not in $_nc_top/etc/passwd; owner left as root"
		_nc_id=0
	fi
	_nc_owner=$_nc_id
	if ! nocow_lookup_id "$_nc_top/etc/group" "$_nc_group"; then
		nocow_warn "group $_nc_group is not in $_nc_top/etc/group; group left as root"
		_nc_id=0
	fi
	_nc_owner=$_nc_owner:$_nc_id
}

# nocow_relabel: give the path its SELinux label on a running SELinux system (an installer relabels its target itself).
nocow_relabel() {
	[ -z "$_nc_top" ] || return 0
	command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled || return 0
	command -v restorecon >/dev/null 2>&1 || return 0
	nocow_try "restorecon failed on $_nc_path" restorecon -- "$_nc_path" || :
}

# nocow_create: make the missing path (a subvolume where allowed and possible) with the declared mode and owner.
nocow_create() {
	if [ ! -w "$_nc_anc" ]; then
		nocow_warn "$_nc_anc is not writable (read-only file system?); $_nc_path not created"
		return 1
	fi
	_nc_parent=${_nc_path%/*}
	if [ -n "$_nc_parent" ] && [ ! -d "$_nc_parent" ]; then
		nocow_try "cannot create $_nc_parent" mkdir -p -- "$_nc_parent" || return 1
	fi
	_nc_kind=directory
	if [ "$_nc_subvol" = auto ] && command -v btrfs >/dev/null 2>&1; then
		nocow_try "cannot create subvolume $_nc_path" btrfs subvolume create -- "$_nc_path" || return 1
		_nc_kind=subvolume
	else
		nocow_try "cannot create $_nc_path" mkdir -- "$_nc_path" || return 1
	fi
	nocow_owner
	nocow_try "cannot set mode $_nc_mode on $_nc_path" chmod -- "$_nc_mode" "$_nc_path" || :
	nocow_try "cannot set owner $_nc_owner on $_nc_path" chown -- "$_nc_owner" "$_nc_path" || :
	nocow_relabel
	nocow_say "$_nc_name" "created $_nc_kind $_nc_path"
}

# nocow_convert: replace the empty plain directory by a subvolume with the same metadata, swapped in by two renames.
nocow_convert() {
	if command -v mountpoint >/dev/null 2>&1 && mountpoint -q -- "$_nc_path"; then
		return 1
	fi
	if [ ! -w "$_nc_path/.." ]; then
		nocow_warn "${_nc_path%/*} is not writable (read-only file system?); $_nc_path not converted"
		return 1
	fi
	nocow_try "cannot create subvolume $_nc_new" btrfs subvolume create -- "$_nc_new" || return 1
	if ! nocow_try "cannot copy the metadata of $_nc_path" cp -a --attributes-only -T -- "$_nc_path" "$_nc_new"; then
		rmdir -- "$_nc_new" 2>/dev/null || :
		return 1
	fi
	# +C before the swap, so no moment exists where the new directory is in place without it.
	_nc_target_dir=$_nc_new
	_nc_new_flag=
	nocow_flag_decide && nocow_try "cannot set +C on $_nc_new" chattr +C -- "$_nc_new" && _nc_new_flag=' with +C'
	if ! nocow_try "cannot move $_nc_path aside" mv -T -- "$_nc_path" "$_nc_old"; then
		rmdir -- "$_nc_new" 2>/dev/null || :
		return 1
	fi
	if ! nocow_try "cannot move the new subvolume to $_nc_path" mv -T -- "$_nc_new" "$_nc_path"; then
		mv -T -- "$_nc_old" "$_nc_path" 2>/dev/null || :
		rmdir -- "$_nc_new" 2>/dev/null || :
		return 1
	fi
	if ! rmdir -- "$_nc_old" 2>/dev/null; then
		nocow_warn "$_nc_old received files during the conversion; left alone"
	fi
	nocow_relabel
	_nc_flag_set=$_nc_new_flag
	nocow_say "$_nc_name" "converted empty directory $_nc_path into a subvolume$_nc_new_flag"
}

# nocow_redundant DIR: true when DIR's data profile is redundant (sets _nc_profile); false when unknown.
nocow_redundant() {
	command -v btrfs >/dev/null 2>&1 || return 1
	_nc_df=$(btrfs filesystem df -- "$1" 2>/dev/null) || return 1
	_nc_profile=${_nc_df%%:*}
	_nc_profile=${_nc_profile#*, }
	case $_nc_profile in
	RAID1 | RAID1C3 | RAID1C4 | RAID10 | RAID5 | RAID6 | DUP) return 0 ;;
	esac
	return 1
}

# nocow_flag_decide: true when +C should be set on _nc_target_dir now (wanted, missing, and the data profile allows it).
nocow_flag_decide() {
	[ "$_nc_nocow" = yes ] || return 1
	_nc_attrs=$(lsattr -d -- "$_nc_target_dir" 2>/dev/null) || _nc_attrs=
	case ${_nc_attrs%% *} in
	*C*) return 1 ;;
	esac
	if [ "$_nc_redund" != force-nocow ] && nocow_redundant "$_nc_target_dir"; then
		_nc_skip_reason="+C not set: the data profile is $_nc_profile, and nocow would remove the checksums its self-healing needs (redundancy: force-nocow overrides)"
		return 1
	fi
	return 0
}

# nocow_flag: set +C on the existing directory when due; tell how many files inside still lack it.
nocow_flag() {
	_nc_target_dir=$_nc_path
	nocow_flag_decide || return 0
	if [ ! -w "$_nc_path" ]; then
		nocow_warn "$_nc_path is not writable (read-only file system?); +C not set"
		return 0
	fi
	nocow_try "cannot set +C on $_nc_path" chattr +C -- "$_nc_path" || return 0
	if nocow_empty "$_nc_path"; then
		nocow_say "$_nc_name" "set +C on $_nc_path"
		return 0
	fi
	# One x per file without C, so no file name (newlines included) can skew the count.
	# shellcheck disable=SC2016 # the inner script expands its own variables
	_nc_cow=$(find "$_nc_path" -xdev -type f -exec sh -c '
		for f; do
			a=$(lsattr -d -- "$f" 2>/dev/null) || continue
			case ${a%% *} in *C*) ;; *) printf x ;; esac
		done' nocow-count {} + 2>/dev/null) || :
	nocow_say "$_nc_name" "set +C on $_nc_path for new files; ${#_nc_cow} existing keep copy-on-write (nocow migrate rewrites them)"
}

# nocow_target NAME PATH SUBVOLUME NOCOW MODE USER GROUP REDUNDANCY: bring one directory to its declared state.
nocow_target() {
	_nc_name=$1 _nc_rel=$2 _nc_subvol=$3 _nc_nocow=$4
	_nc_mode=$5 _nc_user=$6 _nc_group=$7 _nc_redund=$8
	_nc_skip_reason='' _nc_flag_set='' _nc_changed=''
	if [ "${NOCOW_DISABLE:-}" = 1 ]; then
		[ -n "$_nc_disabled_said" ] || printf 'nocow: NOCOW_DISABLE=1: doing nothing\n'
		_nc_disabled_said=1
		return 0
	fi
	if nocow_masked "$_nc_top/etc/tmpfiles.d/nocow-$_nc_name.conf"; then
		nocow_say "$_nc_name" "opted out by the masked /etc/tmpfiles.d/nocow-$_nc_name.conf; doing nothing"
		return 0
	fi
	_nc_path=$_nc_top$_nc_rel
	nocow_resolve || return 0
	_nc_new=$_nc_path.nocow-new
	_nc_old=$_nc_path.nocow-old
	nocow_repair
	nocow_ancestor
	[ "$(stat -f -c %T -- "$_nc_anc" 2>/dev/null)" = btrfs ] || return 0

	if [ ! -e "$_nc_path" ]; then
		nocow_create || return 0
		_nc_changed=1
	elif [ ! -d "$_nc_path" ]; then
		nocow_warn "$_nc_path exists and is not a directory; left alone"
		return 0
	elif [ "$_nc_subvol" = auto ] && command -v btrfs >/dev/null 2>&1; then
		_nc_stat=$(stat -c '%i %d' -- "$_nc_path" "$_nc_path/.." 2>/dev/null) || _nc_stat=
		# shellcheck disable=SC2086 # splits stat's four numbers into $1..$4
		set -- $_nc_stat
		# Inode 256 is a subvolume's root; another device with another inode is a mount point.
		# A leftover that repair had to keep (it holds data) occupies the temporary names.
		if [ "${1:-256}" != 256 ] && [ "${2:-}" = "${4:-}" ] && nocow_empty "$_nc_path" &&
			[ ! -e "$_nc_new" ] && [ ! -e "$_nc_old" ]; then
			nocow_convert && _nc_changed=1
		fi
	fi
	[ -n "$_nc_flag_set" ] || nocow_flag
	if [ -n "$_nc_changed" ] && [ -n "$_nc_skip_reason" ]; then
		nocow_say "$_nc_name" "$_nc_skip_reason"
	fi
	return 0
}
