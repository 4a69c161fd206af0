package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestFailedRestorePutsTheOldContentBack drives a restore's write into a
// real volume to a failure after the volume was emptied and written (the
// content read back differs from the manifest): the volume must hold its
// old content again, and neither the copy of it nor the record remain.
func TestFailedRestorePutsTheOldContentBack(t *testing.T) {
	ctx := context.Background()
	docker := testenv.Docker(t)
	name := testenv.UniqueName(t, "putback")
	testenv.CleanupHelpers(t, name)
	volume := name + "_data"
	if _, err := docker.VolumeCreate(ctx, client.VolumeCreateOptions{Name: volume, Labels: map[string]string{testenv.TestLabel: "1"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = docker.VolumeRemove(context.Background(), volume, client.VolumeRemoveOptions{Force: true})
	})
	eng, err := engine.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "gitopsd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := &Runner{Engine: eng, Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: filepath.Join(dir, "snapshots"), Owner: name}

	if err := eng.WriteVolume(ctx, volume, bytes.NewReader(tarFiles(t, map[string]string{"v/old.txt": "the old content"})), r.helperLabels(name)); err != nil {
		t.Fatal(err)
	}
	before := readFiles(t, eng, volume)
	snap := filepath.Join(dir, "snapshot")
	m, err := format.Write(ctx, snap, bytes.NewReader(tarFiles(t, map[string]string{"v/new.txt": "the snapshot's content"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range m.Entries { // what the volume will be compared with, once written
		if e.Path == "v/new.txt" {
			m.Entries[i].SHA256 = strings.Repeat("0", 64)
		}
	}
	job := store.Restore{Stack: name, Volume: "data", VolumeName: volume, SnapshotID: 1,
		SafetyDir: filepath.Join(r.Dir, restoreDir, name, "data"), Phase: store.RestoreCopying}
	if err := st.PutRestore(ctx, job); err != nil {
		t.Fatal(err)
	}
	err = r.swap(ctx, name, store.Snapshot{Dir: snap}, m, &job)
	if err == nil || !strings.Contains(err.Error(), "old content was put back") {
		t.Fatalf("swap with a failing write: %v; want an error saying the old content was put back", err)
	}
	if after := readFiles(t, eng, volume); after["v/old.txt"] != before["v/old.txt"] || len(after) != len(before) {
		t.Fatalf("after a failed restore the volume holds %v, want %v", after, before)
	}
	if _, err := os.Stat(job.SafetyDir); !os.IsNotExist(err) {
		t.Fatalf("the copy of the old content is still there: %v", err)
	}
	if rs, err := st.Restores(ctx); err != nil || len(rs) != 0 {
		t.Fatalf("restore records left: %+v, %v", rs, err)
	}
}

func tarFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "v/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: time.Now()}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readFiles maps each regular file of a volume to its content.
func readFiles(t *testing.T, eng *engine.Engine, volume string) map[string]string {
	t.Helper()
	rc, err := eng.ReadVolume(context.Background(), volume, nil)
	if err != nil {
		t.Fatal(err)
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
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[hdr.Name] = string(b)
		}
	}
}
