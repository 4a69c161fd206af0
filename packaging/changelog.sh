#!/bin/sh
# Writes the packages' changelog for VERSION in Debian's format (the .deb
# ships it as changelog.Debian.gz, the .rpm as changelog.gz): one entry for
# the commit being packaged, dated by that commit, so that two builds of the
# same commit make the same file. The history itself is Git's.
# Usage: packaging/changelog.sh VERSION
set -eu
version=$1
export LC_ALL=C
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
date=$(git log -1 --format=%ad --date=format:'%a, %d %b %Y %H:%M:%S %z' 2>/dev/null || date -R)
cat <<END
gitopsd ($version) unstable; urgency=medium

  * Package of upstream commit ${commit}; its history:
    https://github.com/gitopsd/gitopsd/commits/${commit}

 -- gitopsd maintainers <maintainers@gitopsd.dev>  $date
END
