package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/backup/remote"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// offsiteRig is an Offsite over a real store and a real server (OpenSSH's
// sshd: the daemon tests run the same flow against S3), with snapshots
// written by the format package into the store's record.
type offsiteRig struct {
	t     *testing.T
	srv   *testenv.SFTPServer
	store *store.Store
	o     *Offsite
	dir   string
	// wrap, if set, wraps each remote the Offsite opens.
	wrap func(remote.Remote) remote.Remote
	log  bytes.Buffer
	mu   sync.Mutex
}

func newOffsiteRig(t *testing.T) *offsiteRig {
	t.Helper()
	g := &offsiteRig{t: t, srv: testenv.StartSFTP(t), dir: t.TempDir()}
	st, err := store.Open(context.Background(), filepath.Join(g.dir, "gitopsd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g.store = st
	url, creds := g.srv.URL()+"/fleet", g.srv.CredentialsFile(t, "")
	g.o = &Offsite{
		Store: st, Log: slog.New(slog.NewTextHandler(&lockedWriter{w: &g.log, mu: &g.mu}, nil)), Host: "edge-1", Where: url, Dir: filepath.Join(g.dir, "remote"),
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Open: func(ctx context.Context) (remote.Remote, error) {
			r, err := remote.Open(ctx, url, creds, remote.Timeouts{Call: 20 * time.Second, Idle: 20 * time.Second})
			if err == nil && g.wrap != nil {
				r = g.wrap(r)
			}
			return r, err
		},
	}
	return g
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// snapshot records a good snapshot of shop/db holding size random bytes,
// taken at, and queues its copy under keep.
func (g *offsiteRig) snapshot(size int, at time.Time, keep policy.Keep) store.Snapshot {
	g.t.Helper()
	ctx := context.Background()
	sn := store.Snapshot{Stack: "shop", Volume: "db", Trigger: TriggerManual, StartedAt: at}
	id, err := g.store.StartSnapshot(ctx, sn)
	if err != nil {
		g.t.Fatal(err)
	}
	sn.ID = id
	sn.Dir = filepath.Join(g.dir, "snapshots", "shop", "db", strconv.FormatInt(id, 10))
	big := make([]byte, size)
	_, _ = rand.Read(big)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "db/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: at})
	_ = tw.WriteHeader(&tar.Header{Name: "db/blob", Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(size), ModTime: at})
	_, _ = tw.Write(big)
	_ = tw.Close()
	m, err := format.Write(ctx, sn.Dir, &buf, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.store.SetSnapshotDir(ctx, id, sn.Dir); err != nil {
		g.t.Fatal(err)
	}
	sn.Status, sn.SizeBytes, sn.FinishedAt = store.SnapshotOK, m.ArchiveSize, at
	if err := g.store.FinishSnapshot(ctx, sn); err != nil {
		g.t.Fatal(err)
	}
	got, _, err := g.store.Snapshot(ctx, id)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.o.Enqueue(ctx, got, keep); err != nil {
		g.t.Fatal(err)
	}
	return got
}

// copies lists shop/db's copies on the remote, reading every archive back.
func (g *offsiteRig) copies() []remote.Snapshot {
	g.t.Helper()
	ctx := context.Background()
	r, err := g.o.Open(ctx)
	if err != nil {
		g.t.Fatal(err)
	}
	defer r.Close()
	list, err := remote.List(ctx, r, remote.Volume{Host: "edge-1", Stack: "shop", Volume: "db"}, remote.CheckHashes)
	if err != nil {
		g.t.Fatal(err)
	}
	return list
}

func (g *offsiteRig) copyState(id int64) store.RemoteCopy {
	g.t.Helper()
	c, ok, err := g.store.RemoteCopy(context.Background(), id)
	if err != nil || !ok {
		g.t.Fatalf("remote copy of snapshot %d: %v %v", id, ok, err)
	}
	return c
}

// passUntil runs passes until the copy of snapshot id is in state want.
func (g *offsiteRig) passUntil(id int64, want string) store.RemoteCopy {
	g.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		g.o.Pass(context.Background())
		c := g.copyState(id)
		if c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("copy of snapshot %d is %s (%s), want %s", id, c.State, c.Error, want)
		}
		time.Sleep(10 * time.Millisecond) // the backoff is a millisecond: wait for a condition, not a duration
	}
}

// TestOffsiteRemoteStopsDuringUpload: the server is killed while the
// archive is on its way. The copy stays pending, with the failure
// recorded; nothing on the remote is listed as good; local retention
// keeps the snapshot. Once the server is back, a retry finishes the copy,
// which reads back whole, and retention may then let the snapshot go.
func TestOffsiteRemoteStopsDuringUpload(t *testing.T) {
	g := newOffsiteRig(t)
	ctx := context.Background()
	var cut *cutAfter
	g.wrap = func(r remote.Remote) remote.Remote {
		if cut == nil {
			cut = &cutAfter{Remote: r, name: format.ArchiveName, trip: testenv.NewTripwire(2<<20, g.srv.Stop)}
			return cut
		}
		return r
	}
	keep := policy.Keep{Last: 1}
	first := g.snapshot(8<<20, time.Now().Add(-time.Hour), keep)
	g.o.Pass(ctx)
	if cut == nil || !cut.trip.Fired() {
		t.Fatal("the server was not stopped during the upload")
	}
	c := g.copyState(first.ID)
	if c.State != store.CopyPending || c.Attempts != 1 || c.Error == "" || c.FailedAt.IsZero() {
		t.Fatalf("after the cut upload: %+v, want pending with one failed attempt", c)
	}

	// A second snapshot: keep last 1 would drop the first, but its copy
	// does not count yet.
	runner := &Runner{Store: g.store, Log: g.o.Log}
	if err := runner.retain(ctx, "shop", "db", keep); err != nil {
		t.Fatal(err)
	}
	if !format.Committed(first.Dir) {
		t.Fatal("local retention removed a snapshot whose remote copy is pending")
	}

	g.srv.Start()
	for _, s := range g.copies() {
		if s.Good() {
			t.Fatalf("a copy cut short is listed as good: %+v", s)
		}
	}
	g.passUntil(first.ID, store.CopyUploaded)
	list := g.copies()
	if len(list) != 1 || !list[0].Good() || list[0].ID != first.Name {
		t.Fatalf("after the retry: %+v, want one good copy named %s", list, first.Name)
	}
	second := g.snapshot(1<<10, time.Now(), keep)
	g.passUntil(second.ID, store.CopyUploaded)
	if err := runner.retain(ctx, "shop", "db", keep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first.Dir); !os.IsNotExist(err) {
		t.Fatalf("retention kept the first snapshot after its copy counted: %v", err)
	}
}

// TestOffsiteRetentionAndEncryption: with recipients, copies of plain
// snapshots are sealed to them (the manifest says encrypted, the archive
// decrypts with the identity and verifies), and the keep policy applies
// to the remote's own list: a copy left there by a previous state_dir
// counts as much as the ones this record knows.
func TestOffsiteRetentionAndEncryption(t *testing.T) {
	g := newOffsiteRig(t)
	ctx := context.Background()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	g.o.Recipients = []age.Recipient{id.Recipient()}
	keep := policy.Keep{Last: 2}
	var snaps []store.Snapshot
	base := time.Now().Add(-4 * time.Hour)
	for i := range 4 {
		sn := g.snapshot(64<<10, base.Add(time.Duration(i)*time.Hour), keep)
		g.passUntil(sn.ID, store.CopyUploaded)
		snaps = append(snaps, sn)
	}
	list := g.copies()
	if len(list) != 2 || list[0].ID != snaps[3].Name || list[1].ID != snaps[2].Name {
		t.Fatalf("remote copies after 4 snapshots with keep last 2: %+v", list)
	}
	for _, s := range list {
		if !s.Good() || !s.Manifest.Encrypted {
			t.Fatalf("copy %s: good %v, encrypted %v; want a good encrypted copy", s.ID, s.Good(), s.Manifest.Encrypted)
		}
	}
	if c := g.copyState(snaps[0].ID); c.State != store.CopyDeleted {
		t.Fatalf("the oldest copy is %s, want deleted", c.State)
	}
	if _, err := os.Stat(filepath.Join(g.o.Dir, "sealed", snaps[3].Name)); !os.IsNotExist(err) {
		t.Fatalf("the sealed copy stayed after its upload: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "back")
	got, err := g.o.Fetch(ctx, "edge-1", "shop", "db", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != snaps[3].Name || !got.Encrypted {
		t.Fatalf("fetched %+v, want the newest copy, encrypted", got)
	}
	if err := format.Verify(ctx, dir, []age.Identity{id}); err != nil {
		t.Fatalf("the sealed copy does not verify with the identity: %v", err)
	}
	if err := format.Verify(ctx, dir, nil); err == nil {
		t.Fatal("the sealed copy verified without the identity")
	}
}

// cutAfter stops the server once name's upload read a number of bytes.
type cutAfter struct {
	remote.Remote
	name string
	trip *testenv.Tripwire
}

func (c *cutAfter) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if path.Base(name) != c.name {
		return c.Remote.Put(ctx, name, r, size)
	}
	return c.Remote.Put(ctx, name, c.trip.Reader(r), size)
}
