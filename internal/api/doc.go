// Package api owns the local API between the daemon and its subcommands:
// HTTP with JSON over a unix socket (the config's `socket`). The JSON types in
// types.go are the documented `--json` contract; the server adapts a
// Backend (the daemon) to HTTP, and the Client is all the CLI knows of the
// daemon.
//
// Routes:
//
//	GET  /v1/status[?stack=S]                    Status; a stack that does not run the head says how far the branch is ahead
//	GET  /v1/history[?stack=S&limit=N]           []Deployment, newest first, each with its steps and their duration_ms
//	GET  /v1/diff[?stack=S]                      []Diff
//	GET  /v1/drift[?limit=N]                     []Drift: open ones and the N (default 50) newest closed
//	GET  /v1/backups[?stack=S]                   []Snapshot, newest first
//	GET  /v1/backups/remote[?stack=S&all_hosts=true] []RemoteSnapshot: copies on backup.remote (this host's, or every host's)
//	POST /v1/backup/run?stack=S[&volume=V&wait=true]       SyncResult; snapshot now (every volume S backs up by default)
//	POST /v1/backup/test?stack=S[&volume=V&level=N&remote=true] SyncResult; restore-test the newest good snapshot
//	                                             (remote: the newest copy on backup.remote, downloaded); error says why it failed
//	POST /v1/backup/restore?stack=S&volume=V[&snapshot=ID] SyncResult; put a snapshot (default: newest good) back
//	POST /v1/sync[?stack=S&wait=true&retry=true] SyncResult; retry=true (`sync --retry`) also retries a revision
//	                                             that failed its health gate, which is otherwise held until the stack's folder changes;
//	                                             skip_wave=true (`sync S --skip-wave`) applies S's new revision whatever its rollout's wave says
//	POST /v1/rollback?stack=S[&to=REV&wait=true&with_data=true] SyncResult; pins S to REV (default: last healthy);
//	                                             with_data restores the snapshots taken before the deploy rolled back
//	POST /v1/unpin?stack=S[&wait=true]           SyncResult; S follows the branch again
//
// Boolean parameters are true as "true" or "1"; absent is false, so a
// client that does not send a newer parameter keeps the older meaning.
//
// Errors answer a non-2xx status with {"error": "..."}.
package api
