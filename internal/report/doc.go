// Package report sets commit statuses on the Git provider, so that the
// commit itself shows how each host took it: GitHub
// (POST /repos/{owner}/{repo}/statuses/{sha}, Authorization: Bearer),
// GitLab (POST /projects/{id}/statuses/{sha}, PRIVATE-TOKEN) and
// Gitea/Forgejo (POST /api/v1/repos/{owner}/{repo}/statuses/{sha},
// Authorization: token).
//
// There is one status context per host and stack, gitopsd/<host>/<stack>,
// so a fleet of hosts shows one line per host and stack on the commit.
// The states are gitopsd's: Running while a roll runs, Pending while the
// stack is held by the rollout, Success once it is Synced and Healthy,
// Failure (with the reason) when the revision was rolled back, failed or
// is Invalid. GitLab shows them as running/pending/success/failed; GitHub
// and Gitea have no running and show pending.
//
// The owner and repository (GitLab: the project's full path) come from
// source.url; the API base from report.url, else from source.url's host.
//
// A Reporter never blocks the reconciler: Set queues, Run sends. Updates
// are coalesced per context and commit (only the latest state is sent, and
// not again if it was the last sent), retried with doubling backoff on 429
// and 5xx (and GitHub's 403 with Retry-After), honouring Retry-After. The
// token is read from its file at each send and never reaches a log line
// or an error.
package report
