// Package source owns gitopsd's view of the Git repository: a local mirror of
// one branch, fetched with go-git, and one exported folder per revision.
//
// Layout under Options.Dir:
//
//	mirror/                 bare repository holding refs/heads/<branch>
//	.mirror-tmp-*           a first clone in progress (or cut off by a crash)
//	checkouts/<sha>/        the tree of one commit, written once, then read-only by convention
//	checkouts/.tmp-<sha>-*  an export in progress (or cut off by a crash)
//
// Both the first clone and every export are built under a temporary name and
// renamed into place, so a kill -9 at any moment leaves either the complete
// folder or a temporary one that is removed later, never a half-written
// mirror or checkout that would be taken for a good one.
package source
