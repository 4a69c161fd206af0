package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyMain copies only the main database file, as a lost -wal would leave it.
func copyMain(t *testing.T, s *Store) string {
	t.Helper()
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "gitopsd.db")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestCheckpointSurvivesALostWAL: without a checkpoint a fresh record lives
// in the WAL alone (the main file without it is empty); after Checkpoint
// the main file alone holds it.
func TestCheckpointSurvivesALostWAL(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.PutStack(ctx, StackState{Name: "web", Revision: "r1", Target: "r1", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	reopen := func(path string) *Store {
		t.Helper()
		c, err := Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if empty, err := reopen(copyMain(t, s)).Empty(ctx); err != nil || !empty {
		t.Fatalf("main file alone before a checkpoint: empty %v, %v; want the row only in the WAL (else this test proves nothing)", empty, err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	c := reopen(copyMain(t, s))
	st, ok, err := c.Stack(ctx, "web")
	if err != nil || !ok || !st.Pinned || st.Target != "r1" {
		t.Fatalf("main file alone after a checkpoint: %+v %v %v", st, ok, err)
	}
	if empty, err := c.Empty(ctx); err != nil || empty {
		t.Fatalf("Empty = %v, %v", empty, err)
	}
}

// TestBackupIsAUsableDatabase: Backup writes a database that opens with
// the record in it, and refuses to overwrite a file.
func TestBackupIsAUsableDatabase(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.PutStack(ctx, StackState{Name: "web", Revision: "r1", Pinned: true}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := s.Backup(ctx, path); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", fi, err)
	}
	if err := s.Backup(ctx, path); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a second backup to the same file: %v", err)
	}
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st, ok, err := b.Stack(ctx, "web"); err != nil || !ok || !st.Pinned {
		t.Fatalf("the backup lacks the stack: %+v %v %v", st, ok, err)
	}
}

// TestDamagedDatabaseNamesTheFix: a damaged page is found at Open, and
// the error names the file and both ways out.
func TestDamagedDatabaseNamesTheFix(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := s.PutStack(ctx, StackState{Name: name, Error: strings.Repeat("x", 3000)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	if len(b) < 3*page {
		t.Fatalf("%d bytes: want pages to damage", len(b))
	}
	for i := 2 * page; i < 3*page; i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, path)
	if err == nil {
		t.Fatal("Open accepted a damaged database")
	}
	for _, want := range []string{path, "malformed", "gitopsd state backup", path + "-wal", "gitopsd state adopt"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestStoppedAndRestoreRecords: the records a backup job writes before it
// acts come back, and go when cleared.
func TestStoppedAndRestoreRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.RecordStopped(ctx, StoppedService{ContainerID: "c1", Stack: "web", Service: "db", Reason: "snapshot"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRestore(ctx, Restore{Stack: "web", Volume: "data", VolumeName: "web_data", SnapshotID: 3, SafetyDir: "/x", Phase: RestoreCopying}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRestore(ctx, Restore{Stack: "web", Volume: "data", VolumeName: "web_data", SnapshotID: 3, SafetyDir: "/x", Phase: RestoreWriting}); err != nil {
		t.Fatal(err)
	}
	stopped, err := s.StoppedServices(ctx)
	if err != nil || len(stopped) != 1 || stopped[0].ContainerID != "c1" || stopped[0].Service != "db" || stopped[0].StoppedAt.IsZero() {
		t.Fatalf("stopped services: %+v, %v", stopped, err)
	}
	rs, err := s.Restores(ctx)
	if err != nil || len(rs) != 1 || rs[0].Phase != RestoreWriting || rs[0].SnapshotID != 3 {
		t.Fatalf("restores: %+v, %v", rs, err)
	}
	if err := s.ClearStopped(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRestore(ctx, "web", "data"); err != nil {
		t.Fatal(err)
	}
	if stopped, _ := s.StoppedServices(ctx); len(stopped) != 0 {
		t.Fatalf("after clear: %+v", stopped)
	}
	if rs, _ := s.Restores(ctx); len(rs) != 0 {
		t.Fatalf("after delete: %+v", rs)
	}
}
