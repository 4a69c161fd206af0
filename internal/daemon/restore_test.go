package daemon

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestRestoreVerifiesFirst: `backup restore` of a snapshot with one flipped
// byte in its archive, or whose manifest disagrees with its archive, is
// refused before anything is touched: the volume keeps its content to the
// byte and its service keeps running, not even stopped. A good snapshot is
// then restored, and the copy of the old content taken for the restore is
// gone afterwards.
func TestRestoreVerifiesFirst(t *testing.T) {
	h := &driftHarness{harness: newHarness(t, nil)}
	h.stack = testenv.Project(t, "restore")
	testenv.CleanupHelpers(t, h.stack)
	h.port = testenv.FreePort(t)
	ctx := context.Background()
	volume := h.deployBackupStack()
	for range 3 {
		if err := h.api.BackupRun(ctx, h.stack, "data", true); err != nil {
			t.Fatalf("backup run: %v", err)
		}
	}
	// The volume moves on after the snapshots: what a restore must not lose
	// when it cannot complete.
	later := tarOf(t, map[string]string{"v/docs/a.txt": "changed after the snapshots", "v/new.txt": "new"})
	if err := h.d.engine.WriteVolume(ctx, volume, bytes.NewReader(later), nil); err != nil {
		t.Fatal(err)
	}
	before := h.volumeContent(volume)
	app := h.containers(h.stack)["app#1"]
	started := h.inspect(app).State.StartedAt

	snap := func(id int64) string {
		sn, ok, err := h.d.store.Snapshot(ctx, id)
		if err != nil || !ok {
			t.Fatalf("snapshot %d: %v", id, err)
		}
		return sn.Dir
	}
	// Snapshot 1: one flipped byte in the middle of the archive.
	archive := filepath.Join(snap(1), format.ArchiveName)
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(archive, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Snapshot 2: the archive is intact, the manifest says a file holds
	// something else.
	m, err := format.ReadManifest(snap(2))
	if err != nil {
		t.Fatal(err)
	}
	edited := false
	for i, e := range m.Entries {
		if e.Type == format.TypeFile && strings.HasSuffix(e.Path, "a.txt") {
			m.Entries[i].SHA256 = strings.Repeat("0", 64)
			edited = true
		}
	}
	if !edited {
		t.Fatalf("no a.txt in the manifest: %+v", m.Entries)
	}
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap(2), format.ManifestName), mj, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		id   int64
		want string
	}{{1, format.ArchiveName}, {2, "a.txt"}} {
		err := h.api.BackupRestore(ctx, h.stack, "data", c.id, "")
		if err == nil || !strings.Contains(err.Error(), "refused") || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("restore of damaged snapshot %d: %v; want a refusal naming %s", c.id, err, c.want)
		}
		t.Logf("snapshot %d refused: %v", c.id, err)
		if after := h.volumeContent(volume); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("a refused restore changed the volume:\nbefore %v\nafter  %v", before, after)
		}
		if st := h.inspect(app).State; !st.Running || st.StartedAt != started {
			t.Fatalf("a refused restore stopped the app: running %v, started %s (was %s)", st.Running, st.StartedAt, started)
		}
	}

	// A good snapshot restores, exactly, and leaves no copy behind.
	if err := h.api.BackupRestore(ctx, h.stack, "data", 3, ""); err != nil {
		t.Fatalf("restore of a good snapshot: %v", err)
	}
	h.volumeMatches(volume, snap(3))
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "snapshots", ".restore", h.stack)); !os.IsNotExist(err) {
		t.Fatalf("the copy of the old content outlived the restore: %v", err)
	}
	if got, err := waitServes(h.port, "v1", 30*time.Second); err != nil {
		t.Fatalf("app after the restore: %q, %v", got, err)
	}
	if n, err := h.d.store.StoppedServices(ctx); err != nil || len(n) != 0 {
		t.Fatalf("stopped services left recorded: %+v, %v", n, err)
	}
}

// volumeContent maps every entry of a volume to its type and, for files,
// the sha256 of the content.
func (h *harness) volumeContent(volume string) map[string]string {
	h.t.Helper()
	rc, err := h.d.engine.ReadVolume(context.Background(), volume, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			h.t.Fatalf("read volume %s: %v", volume, err)
		}
		sum := sha256.New()
		if _, err := io.Copy(sum, tr); err != nil {
			h.t.Fatal(err)
		}
		out[hdr.Name] = fmt.Sprintf("%c %o %s", hdr.Typeflag, hdr.Mode, hex.EncodeToString(sum.Sum(nil))[:12])
	}
}

// tarOf is a tar of regular files (names under "v/", as WriteVolume takes them).
func tarOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
