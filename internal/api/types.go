package api

// The JSON documents below are the stable contract of `--json` output
// (docs/operations.md, "Commands"). Add fields; never rename or remove one.

// Status is `gitopsd status --json`.
type Status struct {
	Host   string       `json:"host"`
	Source SourceStatus `json:"source"`
	// Hold, when not empty, says why the daemon touches no stack: its
	// record was found empty while its containers run, and it waits for
	// `gitopsd state adopt` (or a restored record).
	Hold   string        `json:"hold,omitempty"`
	Stacks []StackStatus `json:"stacks"`
	// Error is the last reconcile's error that is no one stack's (the
	// store, the checkout, a revision that would not load), "" once a
	// reconcile of every stack went through; ErrorAt is when it happened.
	Error   string `json:"error"`
	ErrorAt string `json:"error_at"`
	// StoreError is the last write to the state database that failed, ""
	// once one works again; StoreErrorSince is when writes began failing.
	// Healing goes on meanwhile, unrecorded.
	StoreError      string `json:"store_error"`
	StoreErrorSince string `json:"store_error_since"`
}

// SourceStatus is what the daemon knows of the Git source.
type SourceStatus struct {
	URL       string `json:"url"`
	Branch    string `json:"branch"`
	Head      string `json:"head"`
	FetchedAt string `json:"fetched_at"`
	Error     string `json:"error"`
	// FetchingSince is when the fetch in flight began ("" when none is):
	// a fetch that takes long shows here before source.timeout fails it.
	FetchingSince string `json:"fetching_since"`
}

// StackStatus is one stack of `status`. When the stack does not run the
// branch head (pinned by a rollback, held after a revision failed its health
// gate, failed, or not synced yet), Head is the head and BranchAhead how
// many of the branch's commits its revision lacks (`git rev-list --count
// revision..head`); else they are "" and 0.
type StackStatus struct {
	Name           string           `json:"name"`
	Revision       string           `json:"revision"`
	Target         string           `json:"target"`
	Sync           string           `json:"sync"`
	Health         string           `json:"health"`
	Pinned         bool             `json:"pinned"`
	Held           bool             `json:"held"`           // Target failed its health gate: polls and a plain sync leave it, `sync --retry` retries it
	Hold           string           `json:"hold,omitempty"` // "held by rollout: ...": the fleet's rollout holds Target here (`sync --skip-wave` applies it)
	Head           string           `json:"head"`           // branch head, when the stack does not run it
	BranchAhead    int              `json:"branch_ahead"`   // commits the branch is ahead of Revision; -1: could not be counted
	Error          string           `json:"error"`
	LastDeployment *DeploymentBrief `json:"last_deployment"`
	Services       []ServiceStatus  `json:"services"`
	Drift          []DriftBrief     `json:"drift"`
	Backups        []BackupBrief    `json:"backups"`
}

// DeploymentBrief is the last deployment of a stack, in `status`.
type DeploymentBrief struct {
	ID      int64  `json:"id"`
	Trigger string `json:"trigger"`
	Outcome string `json:"outcome"`
	Error   string `json:"error"`
}

// ServiceStatus is what runs of one service.
type ServiceStatus struct {
	Name       string   `json:"name"`
	Replicas   int      `json:"replicas"`
	Healthy    int      `json:"healthy"`
	Image      string   `json:"image"`
	Containers []string `json:"containers"`
}

// DriftBrief is an open drift of a stack, in `status`.
type DriftBrief struct {
	Kind    string `json:"kind"`
	Service string `json:"service"`
	Since   string `json:"since"`
}

// BackupBrief is the backup state of one volume, in `status`.
type BackupBrief struct {
	Volume      string `json:"volume"`
	LastSuccess string `json:"last_success"`
	LastTest    string `json:"last_test"`
	LastTestOK  bool   `json:"last_test_ok"`
	// With backup.remote: copies waiting to be sent (or retried), when
	// the last copy was read back whole from the remote, and the last
	// upload's error when none succeeded since (and when it failed).
	RemotePending     int    `json:"remote_pending"`
	RemoteLastSuccess string `json:"remote_last_success"`
	RemoteLastError   string `json:"remote_last_error"`
	RemoteLastErrorAt string `json:"remote_last_error_at"`
	// Restored says how the volume was last filled when a deployment
	// created it (restore: if_empty): from which snapshot, or that no copy
	// existed and it started empty; "" when never.
	Restored string `json:"restored,omitempty"`
}

// Deployment is one element of `history --json`.
type Deployment struct {
	ID         int64  `json:"id"`
	Stack      string `json:"stack"`
	Trigger    string `json:"trigger"`
	From       string `json:"from"`
	To         string `json:"to"`
	StartedAt  string `json:"started_at"`
	FinishedAt string `json:"finished_at"`
	Outcome    string `json:"outcome"`
	Error      string `json:"error"`
	Steps      []Step `json:"steps"`
}

// Step is one action of a deployment. Replica is the replica number of a
// container step (0 for networks and volumes); DurationMS is how long the step took, a create or
// recreate including the new container's health gate.
type Step struct {
	At         string `json:"at"`
	Action     string `json:"action"`
	Service    string `json:"service"`
	Replica    int    `json:"replica"`
	Container  string `json:"container"`
	Detail     string `json:"detail"`
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
}

// Drift is one element of `drift --json`: a drift open now (ClosedAt and
// ClosedBy "") or closed recently. Container is a container name, or
// "network:<key>" / "volume:<key>"; it and Service are "" for a stack-wide
// drift (kind behind). ClosedBy is healed, resolved or superseded.
type Drift struct {
	ID        int64  `json:"id"`
	Stack     string `json:"stack"`
	Service   string `json:"service"`
	Container string `json:"container"`
	Kind      string `json:"kind"`
	Detail    string `json:"detail"`
	OpenedAt  string `json:"opened_at"`
	ClosedAt  string `json:"closed_at"`
	ClosedBy  string `json:"closed_by"`
}

// Snapshot is one element of `backup list --json`, newest first. Status is
// ok, failed, running or deleted (by retention); TestOK says whether a
// restore test of it ever passed, TestedAt when the last one ran, and
// LastTestOK/LastTestError/LastTestLevel how it went.
type Snapshot struct {
	ID int64 `json:"id"`
	// Name is the snapshot's name on backup.remote (its copy's id there).
	Name          string `json:"name"`
	Stack         string `json:"stack"`
	Volume        string `json:"volume"`
	CreatedAt     string `json:"created_at"`
	SizeBytes     int64  `json:"size_bytes"`
	TestOK        bool   `json:"test_ok"`
	TestedAt      string `json:"tested_at"`
	Status        string `json:"status"`
	Trigger       string `json:"trigger"`
	Files         int64  `json:"files"`
	DataBytes     int64  `json:"data_bytes"`
	Encrypted     bool   `json:"encrypted"`
	Error         string `json:"error"`
	LastTestOK    bool   `json:"last_test_ok"`
	LastTestLevel int    `json:"last_test_level"`
	LastTestError string `json:"last_test_error"`
}

// RemoteSnapshot is one element of `backup list --remote --json`: a copy
// on the remote, newest first within each volume. ID is the copy's folder
// on the remote (<host>/<stack>/<volume>/<id>). State is verified,
// committed (marker, manifest and archive size check out; the archive was
// not read back by this listing), damaged or partial (an upload under way
// or cut short), Problem why it is not committed. The test fields are
// those of the newest restore test of this copy run on this host.
type RemoteSnapshot struct {
	Host          string `json:"host"`
	Stack         string `json:"stack"`
	Volume        string `json:"volume"`
	ID            string `json:"id"`
	CreatedAt     string `json:"created_at"`
	SizeBytes     int64  `json:"size_bytes"`
	Files         int64  `json:"files"`
	DataBytes     int64  `json:"data_bytes"`
	Encrypted     bool   `json:"encrypted"`
	State         string `json:"state"`
	Problem       string `json:"problem"`
	TestedAt      string `json:"tested_at"`
	LastTestOK    bool   `json:"last_test_ok"`
	LastTestLevel int    `json:"last_test_level"`
	LastTestError string `json:"last_test_error"`
}

// Diff is what a sync of one stack would change.
type Diff struct {
	Stack         string   `json:"stack"`
	Revision      string   `json:"revision"`
	Actions       []string `json:"actions"`
	OrphanVolumes []string `json:"orphan_volumes"`
	Error         string   `json:"error"`
}

// SyncResult answers a request that changes something, and is
// `sync --json` (with Stack and Waited filled in by the client). Held lists
// the stacks a sync left held (their revision failed its health gate; only
// `sync --retry` tries it again); Error then says so too.
type SyncResult struct {
	Stack  string      `json:"stack"`
	Queued bool        `json:"queued"`
	Waited bool        `json:"waited"`
	Error  string      `json:"error"`
	Held   []HeldStack `json:"held"`
}

// HeldStack is a stack a sync left on its revision: Revision (the one it
// was to run) failed its health gate, for Reason, or the fleet's rollout
// holds it (ByRollout).
type HeldStack struct {
	Stack    string `json:"stack"`
	Revision string `json:"revision"`
	Reason   string `json:"reason"`
	// ByRollout: the fleet's rollout holds Revision on this host (Reason
	// says why); `sync STACK --skip-wave` applies it now.
	ByRollout bool `json:"by_rollout,omitempty"`
}

// StackNames is the answer of /v1/stacks: the stacks the daemon knows
// (for shell completion and the clients' checks).
type StackNames struct {
	Stacks []string `json:"stacks"`
}

// VersionInfo is `gitopsd version --json`: the client's version, and the
// daemon's when it answered (else DaemonError says why not).
type VersionInfo struct {
	Client      string `json:"client"`
	Daemon      string `json:"daemon"`
	DaemonError string `json:"daemon_error,omitempty"`
}

// errorBody is the body of every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
}
