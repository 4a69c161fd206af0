package sync

import (
	"os"
	"syscall"
)

// crashAt names a point of a roll where the process kills itself
// (GITOPSD_CRASH_AT): the crash tests' way to cut a roll exactly there, as a
// power cut or kill -9 would. Empty in production.
var crashAt = os.Getenv("GITOPSD_CRASH_AT")

// Points of a roll that the crash tests cut at.
const (
	CrashStopFirstCreated     = "stop-first:created"     // old parked and running, new created
	CrashStopFirstOldStopped  = "stop-first:old-stopped" // old parked and stopped, new created
	CrashStopFirstNewStarted  = "stop-first:new-started" // new running, before its gate
	CrashStartFirstNewStarted = "start-first:next-started"
	CrashStartFirstOldRemoved = "start-first:old-removed" // new running under its temporary name
)

func crashPoint(name string) {
	if crashAt == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
