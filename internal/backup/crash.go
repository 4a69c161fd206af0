package backup

import (
	"context"
	"io"
	"os"
	"syscall"

	"github.com/gitopsd/gitopsd/internal/backup/remote"
)

// crashAt names a point where the process kills itself (GITOPSD_CRASH_AT),
// as a power cut or kill -9 would: the crash tests' way to cut a snapshot
// halfway. Empty in production.
var crashAt = os.Getenv("GITOPSD_CRASH_AT")

// CrashHalfway kills the process once 1 MiB of a volume has been read into
// a snapshot: the archive is half-written and has no commit marker.
const CrashHalfway = "backup:halfway"

type halfway struct {
	r    io.Reader
	read int64
}

func (h *halfway) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.read += int64(n)
	if h.read > 1<<20 {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return n, err
}

// CrashRestoreHalfway kills the process once 1 MiB of a snapshot has been
// written into the volume it restores: the volume is half-written, and
// only the copy of its old content taken first can make it whole.
const CrashRestoreHalfway = "restore:halfway"

// restoreCrashReader wraps the stream a restore writes into the volume.
func restoreCrashReader(r io.Reader) io.Reader {
	if crashAt != CrashRestoreHalfway {
		return r
	}
	return &halfway{r: r}
}

// crashRemote makes Put kill the process halfway through a file when
// GITOPSD_CRASH_AT is CrashUploadHalfway.
func crashRemote(r remote.Remote) remote.Remote {
	if crashAt != CrashUploadHalfway {
		return r
	}
	return halfwayRemote{r}
}

type halfwayRemote struct{ remote.Remote }

func (h halfwayRemote) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	return h.Remote.Put(ctx, name, &halfway{r: r}, size)
}
