// Package source owns gitopsd's view of the Git repository: a local mirror of
// one branch, fetched with go-git, and one exported folder per revision.
//
// Layout under Options.Dir:
//
//	mirror/                 bare repository holding refs/heads/<branch>
//	.mirror-tmp-*           a first clone in progress (or cut off by a crash)
//	checkouts/<sha>/        the tree of one commit, written once
//	checkouts/.tmp-<sha>-*  an export in progress (or cut off by a crash)
//
// Both the first clone and every export are built under a temporary name and
// renamed into place, so a kill -9 at any moment leaves either the complete
// folder or a temporary one that is removed later, never a half-written
// mirror or checkout that would be taken for a good one.
//
// A checkout is what stacks are loaded from, so it must hold exactly the
// revision's tree. Containers cannot write into it (the reconciler mounts
// binds into a checkout read-only), and a checkout left by an earlier run
// is compared with its tree (content, modes, links, extra files) before it
// is used again, and repaired in place where it differs. Within one run,
// what the process wrote or checked is trusted.
//
// Checkouts are bounded: a file over Options.MaxFileBytes (default 64 MiB)
// is left out, and when the remaining files add up to more than
// Options.MaxCheckoutBytes (default 512 MiB) the biggest are left out until
// they fit. Sizes come from the objects' headers, so nothing that large is
// read or written. LeftOut names what was left out under a stack's folder,
// so that stack is Invalid while the others deploy.
//
// Trust in the history: with signatures verified, a new head must also
// descend from the one applied before it (CheckDescends), or a force-push
// of an older signed commit would roll hosts back.
package source
