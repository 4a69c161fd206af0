package remote

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup/format"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// server is a real storage server a suite runs against, with the hooks
// the failure tests need.
type server struct {
	url, credentials string
	stop, start      func()
	freeze, thaw     func()
	// flip changes one byte of the stored file name (relative to the
	// remote's root) behind the remote's back, as bit rot would.
	flip func(t *testing.T, name string)
	log  func() string
}

// TestS3 runs the remote suite against SeaweedFS's S3 gateway.
func TestS3(t *testing.T) {
	s := testenv.StartS3(t)
	s.MakeBucket(t, "backups")
	runSuite(t, server{
		url: s.URL("backups", "gitopsd/prod"), credentials: s.CredentialsFile(t),
		stop: s.Stop, start: s.Start, freeze: s.Freeze, thaw: s.Thaw, log: s.Log,
		flip: func(t *testing.T, name string) {
			t.Helper()
			s.FlipByte(t, "backups", path.Join("gitopsd/prod", name))
		},
	})
}

// TestS3SlowUplink: an upload on a line slower than a part per idle
// timeout is not taken for a stalled one. A part is read whole into
// memory before it is sent, so only the bytes moving on the connection
// show that it progresses.
func TestS3SlowUplink(t *testing.T) {
	s := testenv.StartS3(t)
	s.MakeBucket(t, "slow")
	proxy := slowProxy(t, s.Endpoint, 1<<20) // 1 MiB/s towards the server
	url := "s3://" + proxy + "/slow/prefix"
	r, err := Open(context.Background(), url, s.CredentialsFile(t), Timeouts{Call: 30 * time.Second, Idle: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const size = 6 << 20 // one part: about 6s on the line, three idle timeouts
	if err := r.Put(context.Background(), "big", bytes.NewReader(randomData(size)), size); err != nil {
		t.Fatalf("upload on a slow line: %v", err)
	}
	if got, err := r.Stat(context.Background(), "big"); err != nil || got != size {
		t.Fatalf("stat after the upload = %d, %v", got, err)
	}
}

// slowProxy forwards 127.0.0.1 connections to target, passing at most
// rate bytes a second towards it, and returns its address.
func slowProxy(t *testing.T, target string, rate int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(c, up) }()
				const chunk = 16 << 10
				buf := make([]byte, chunk)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := up.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(time.Duration(n) * time.Second / time.Duration(rate))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestSFTP runs the remote suite against OpenSSH's sshd, and checks that a
// server whose host key is not the pinned one is refused.
func TestSFTP(t *testing.T) {
	s := testenv.StartSFTP(t)
	root := filepath.Join(s.Root, "backups")
	runSuite(t, server{
		url: s.URL() + "/backups", credentials: s.CredentialsFile(t, ""),
		stop: s.Stop, start: s.Start, freeze: s.Freeze, thaw: s.Thaw, log: s.Log,
		flip: func(t *testing.T, name string) {
			t.Helper()
			file := filepath.Join(root, filepath.FromSlash(name))
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 0x01
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	})

	t.Run("WrongHostKey", func(t *testing.T) {
		wrong := s.WrongKnownHosts(t)
		_, err := Open(context.Background(), s.URL(), s.CredentialsFile(t, wrong), testTimeouts)
		if err == nil {
			t.Fatal("connected to a server whose host key is not the pinned one")
		}
		for _, want := range []string{s.Host, wrong, "does not match", "refusing to connect"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %q: %v", want, err)
			}
		}
	})
	t.Run("PinnedKeyIsNotTheClientsFavourite", func(t *testing.T) {
		// The server offers ed25519 and RSA; known_hosts pins only the
		// RSA key, hashed. The client must ask for the pinned one.
		kh := s.KnownHostsWith(t, "ssh-rsa", true)
		r, err := Open(context.Background(), s.URL(), s.CredentialsFile(t, kh), testTimeouts)
		if err != nil {
			t.Fatalf("open with only the RSA host key pinned: %v", err)
		}
		r.Close()
	})
	t.Run("UnknownHost", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), s.URL(), s.CredentialsFile(t, empty), testTimeouts)
		if err == nil || !strings.Contains(err.Error(), "is not in SSH_KNOWN_HOSTS "+empty) || !strings.Contains(err.Error(), s.Host) {
			t.Fatalf("want a refusal naming %s and %s, got %v", s.Host, empty, err)
		}
	})
}

var testTimeouts = Timeouts{Call: 30 * time.Second, Idle: 30 * time.Second}

func runSuite(t *testing.T, srv server) {
	ctx := context.Background()
	r, err := Open(ctx, srv.url, srv.credentials, testTimeouts)
	if err != nil {
		t.Fatalf("open %s: %v\n%s", srv.url, err, srv.log())
	}
	t.Cleanup(func() { r.Close() })
	vol := Volume{Host: "edge-1", Stack: "shop", Volume: "db"}

	t.Run("RoundTrip", func(t *testing.T) {
		v := vol
		v.Volume = "roundtrip"
		local := makeSnapshot(t, 3<<20)
		key := Key{Volume: v, ID: "20250301T120000Z-1"}
		up, err := Upload(ctx, r, key, local)
		if err != nil {
			t.Fatal(err)
		}
		if !up.Good() {
			t.Fatalf("upload returned a copy that is %s: %s", up.State, up.Problem)
		}
		list, err := List(ctx, r, v, CheckHashes)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Key != key || !list[0].Good() || list[0].Manifest == nil {
			t.Fatalf("list = %+v, want one verified copy %s", list, key)
		}
		wantManifest, err := format.ReadManifest(local)
		if err != nil {
			t.Fatal(err)
		}
		if list[0].Manifest.ArchiveSHA256 != wantManifest.ArchiveSHA256 {
			t.Errorf("listed manifest has archive sha256 %s, want %s", list[0].Manifest.ArchiveSHA256, wantManifest.ArchiveSHA256)
		}
		back := filepath.Join(t.TempDir(), "back")
		if _, err := Download(ctx, r, key, back); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{format.ArchiveName, format.ManifestName, format.CommittedName} {
			want, _ := os.ReadFile(filepath.Join(local, name))
			got, err := os.ReadFile(filepath.Join(back, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("downloaded %s differs from the uploaded one (err %v)", name, err)
			}
		}
		if err := format.Verify(ctx, back, nil); err != nil {
			t.Errorf("the downloaded snapshot does not verify: %v", err)
		}
		// Uploading the same snapshot again is a no-op that checks the copy.
		if s, err := Upload(ctx, r, key, local); err != nil || !s.Good() {
			t.Errorf("upload again = %s, %v; want the verified copy", s.State, err)
		}
	})

	t.Run("FlippedByte", func(t *testing.T) {
		v := vol
		v.Volume = "flipped"
		key := Key{Volume: v, ID: "20250301T120000Z-2"}
		if _, err := Upload(ctx, r, key, makeSnapshot(t, 1<<20)); err != nil {
			t.Fatal(err)
		}
		srv.flip(t, key.String()+"/"+format.ArchiveName)
		s := Verify(ctx, r, key)
		if s.Good() || s.State != StateDamaged || !strings.Contains(s.Problem, "sha256") {
			t.Fatalf("verify after a flipped byte = %s (%s), want damaged by sha256", s.State, s.Problem)
		}
		list, err := List(ctx, r, v, CheckHashes)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Good() {
			t.Fatalf("list after a flipped byte = %+v, want the copy not good", list)
		}
		var mismatch *format.Mismatch
		_, err = Download(ctx, r, key, filepath.Join(t.TempDir(), "back"))
		if !errors.As(err, &mismatch) {
			t.Fatalf("download of a damaged copy = %v, want a sha256 mismatch", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		v := vol
		v.Volume = "delete"
		older, newer := Key{Volume: v, ID: "20250301T120000Z-3"}, Key{Volume: v, ID: "20250302T120000Z-4"}
		for _, k := range []Key{older, newer} {
			if _, err := Upload(ctx, r, k, makeSnapshot(t, 64<<10)); err != nil {
				t.Fatal(err)
			}
		}
		if err := Delete(ctx, r, older); err != nil {
			t.Fatal(err)
		}
		list, err := List(ctx, r, v, CheckSizes)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Key != newer || list[0].State != StateCommitted {
			t.Fatalf("list after delete = %+v, want only %s, committed", list, newer)
		}
		if _, err := r.Stat(ctx, older.String()+"/"+format.ArchiveName); !errors.Is(err, ErrNotExist) {
			t.Errorf("the deleted copy's archive is still there (stat: %v)", err)
		}
		if err := Delete(ctx, r, older); err != nil {
			t.Errorf("deleting a deleted copy: %v", err)
		}
	})

	t.Run("HalfUploaded", func(t *testing.T) {
		v := vol
		v.Volume = "half"
		local := makeSnapshot(t, 256<<10)
		key := Key{Volume: v, ID: "20250301T120000Z-5"}
		// What an upload cut short after the archive and manifest leaves.
		for _, name := range []string{format.ArchiveName, format.ManifestName} {
			if err := putFile(ctx, r, key.String()+"/"+name, filepath.Join(local, name)); err != nil {
				t.Fatal(err)
			}
		}
		for _, check := range []Check{CheckSizes, CheckHashes} {
			list, err := List(ctx, r, v, check)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || list[0].Good() || list[0].State != StatePartial {
				t.Fatalf("list (check %d) of a copy without COMMITTED = %+v, want it partial", check, list)
			}
		}
		if _, err := Download(ctx, r, key, filepath.Join(t.TempDir(), "back")); err == nil {
			t.Fatal("downloaded a copy without COMMITTED")
		}
		if s, err := Upload(ctx, r, key, local); err != nil || !s.Good() {
			t.Fatalf("finishing the upload = %s, %v", s.State, err)
		}
	})

	t.Run("HungServer", func(t *testing.T) {
		// Short deadlines, so that the test does not wait a minute; a
		// call without one would hang here until the test times out.
		short := Timeouts{Call: 3 * time.Second, Idle: 3 * time.Second}
		hr, err := Open(ctx, srv.url, srv.credentials, short)
		if err != nil {
			t.Fatal(err)
		}
		defer hr.Close()
		local := makeSnapshot(t, 1<<20)
		srv.freeze()
		thawed := false
		defer func() {
			if !thawed {
				srv.thaw()
			}
		}()
		if _, err := hr.Stat(ctx, "anything"); err == nil || errors.Is(err, ErrNotExist) {
			t.Errorf("stat on a hung server = %v, want a deadline error", err)
		}
		const size = 4 << 20
		if err := hr.Put(ctx, "hung/file", bytes.NewReader(make([]byte, size)), size); err == nil {
			t.Error("put to a hung server succeeded")
		} else {
			t.Logf("put to a hung server: %v", err)
		}
		key := Key{Volume: Volume{Host: "edge-1", Stack: "shop", Volume: "hung"}, ID: "20250301T120000Z-7"}
		if _, err := Upload(ctx, hr, key, local); err == nil {
			t.Error("upload to a hung server succeeded")
		} else {
			t.Logf("upload to a hung server: %v", err)
		}
		srv.thaw()
		thawed = true
		// The remote recovers on its own once the server answers again.
		if s, err := Upload(ctx, hr, key, local); err != nil || !s.Good() {
			t.Fatalf("upload after the server recovered = %s, %v", s.State, err)
		}
	})

	// Last: it stops and restarts the server.
	t.Run("ServerStoppedMidUpload", func(t *testing.T) {
		v := vol
		v.Volume = "stopped"
		local := makeSnapshot(t, 24<<20)
		key := Key{Volume: v, ID: "20250301T120000Z-6"}
		// The server goes away once 20 MiB of the archive were read for
		// sending: past the first 16 MiB part on S3, mid-stream on SFTP.
		stopping := &stopAfter{Remote: r, name: format.ArchiveName, trip: testenv.NewTripwire(20<<20, srv.stop)}
		_, err := Upload(ctx, stopping, key, local)
		if err == nil {
			t.Fatal("upload succeeded while the server was stopped")
		}
		if !stopping.trip.Fired() {
			t.Fatalf("the server was never stopped; upload error: %v", err)
		}
		t.Logf("upload while the server went away: %v", err)
		srv.start()
		list, lerr := List(ctx, r, v, CheckHashes)
		if lerr != nil {
			t.Fatal(lerr)
		}
		for _, s := range list {
			if s.Good() {
				t.Fatalf("after an interrupted upload, %s is listed as good", s.Key)
			}
		}
		if s, err := Upload(ctx, r, key, local); err != nil || !s.Good() {
			t.Fatalf("retry after the server returned = %s, %v\n%s", s.State, err, srv.log())
		}
		back := filepath.Join(t.TempDir(), "back")
		if _, err := Download(ctx, r, key, back); err != nil {
			t.Fatal(err)
		}
		if err := format.Verify(ctx, back, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// stopAfter is a Remote whose server is stopped once the named file's
// upload has read a number of bytes: the real server goes away mid-transfer.
type stopAfter struct {
	Remote
	name string
	trip *testenv.Tripwire
}

func (s *stopAfter) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if path.Base(name) != s.name {
		return s.Remote.Put(ctx, name, r, size)
	}
	return s.Remote.Put(ctx, name, s.trip.Reader(r), size)
}

// makeSnapshot writes a real snapshot (format.Write) of a volume holding a
// few small files and one of size random, incompressible bytes.
func makeSnapshot(t testing.TB, size int) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	add := func(hdr tar.Header, content []byte) {
		hdr.ModTime = mtime
		hdr.Size = int64(len(content))
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			t.Fatal(err)
		}
	}
	add(tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755}, nil)
	add(tar.Header{Typeflag: tar.TypeReg, Name: "data/config.json", Mode: 0o644}, []byte(`{"name":"shop"}`))
	add(tar.Header{Typeflag: tar.TypeReg, Name: "data/blob.bin", Mode: 0o600, Uid: 999, Gid: 999}, randomData(size))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "snapshot")
	if _, err := format.Write(context.Background(), dir, &buf, nil); err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	return dir
}

func randomData(n int) []byte {
	b := make([]byte, n)
	var seed [32]byte
	copy(seed[:], fmt.Sprint(time.Now().UnixNano()))
	_, _ = rand.NewChaCha8(seed).Read(b)
	return b
}
