package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/s3"
)

// seaweedVersion is the SeaweedFS the S3 tests run against, pinned so
// every CI machine runs the same one. SeaweedFS tags are not semantic
// versions the module proxy knows, so this is the pseudo-version of a
// commit of its master branch.
const (
	seaweedVersion = "v0.0.0-20261109003541-7506e5f91cd6"
	seaweedModule  = "github.com/seaweedfs/seaweedfs"
)

var seaweedBin struct {
	once sync.Once
	path string
	err  error
}

// S3Server is SeaweedFS (`weed server -filer -s3`: master, volume server,
// filer and S3 gateway in one process) on 127.0.0.1, storing in the test's
// temporary folder, with one identity that may do everything.
type S3Server struct {
	Endpoint  string // 127.0.0.1:<s3 port>, plain HTTP
	AccessKey string
	SecretKey string

	t    testing.TB
	proc *serverProcess
}

// StartS3 runs SeaweedFS for the test (building it from the Go module
// proxy into the cache folder the first time, as StartRegistry does) and
// stops it when the test ends.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	seaweedBin.once.Do(func() { seaweedBin.path, seaweedBin.err = ensureSeaweed(t) })
	if seaweedBin.err != nil {
		t.Fatalf("seaweedfs %s: %v", seaweedVersion, seaweedBin.err)
	}
	dir := t.TempDir()
	s := &S3Server{AccessKey: "gitopsd" + randomHex(t, 4), SecretKey: randomHex(t, 16), t: t}
	port := func() string { return strconv.Itoa(FreePort(t)) }
	s3Port := port()
	s.Endpoint = "127.0.0.1:" + s3Port
	config := filepath.Join(dir, "s3.json")
	identities := map[string]any{"identities": []any{map[string]any{
		"name":        "gitopsd-test",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}}
	data, _ := json.Marshal(identities)
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	data2 := filepath.Join(dir, "data")
	if err := os.Mkdir(data2, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every port explicit: the defaults (and "grpc = http + 10000") would
	// collide with other tests running at the same time.
	args := []string{seaweedBin.path, "server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-dir=" + data2, "-volume.max=32", "-master.volumeSizeLimitMB=64",
		"-master.port=" + port(), "-master.port.grpc=" + port(), "-master.telemetry=false",
		"-volume.port=" + port(), "-volume.port.grpc=" + port(),
		"-filer", "-filer.port=" + port(), "-filer.port.grpc=" + port(), "-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port=" + s3Port, "-s3.port.grpc=" + port(), "-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config=" + config, "-s3.iam=false", "-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
	}
	// The filer keeps its metadata store in the working folder.
	s.proc = &serverProcess{name: "seaweedfs s3 on " + s.Endpoint, argv: args, dir: dir, logf: filepath.Join(dir, "weed.log")}
	t.Cleanup(func() {
		if err := s.proc.stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	s.Start()
	return s
}

// Start runs the server (again, after Stop: the data stays) and waits
// until the S3 gateway answers an authenticated request.
func (s *S3Server) Start() {
	s.t.Helper()
	if err := s.proc.start(s.waitAnswers); err != nil {
		s.t.Fatal(err)
	}
}

// waitAnswers waits until the server stores an object: the gateway
// listens, the identity is loaded, and (what takes longest after a
// restart) the master has elected itself and the volume server joined it,
// before which a write hangs. The probe lives in a bucket of its own.
func (s *S3Server) waitAnswers(exited <-chan struct{}) error {
	cli := s.Client(s.t)
	deadline := time.Now().Add(3 * time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := probeWrite(cli)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return fmt.Errorf("seaweedfs exited (last answer: %v)", err)
		case <-tick.C:
		}
	}
}

const probeBucket = "gitopsd-test-probe"

func probeWrite(cli *s3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := cli.HeadBucket(ctx, probeBucket)
	var e *s3.Error
	if errors.As(err, &e) && e.Code == "NoSuchBucket" {
		err = cli.MakeBucket(ctx, probeBucket)
	}
	if err != nil {
		return err
	}
	return cli.PutObject(ctx, probeBucket, "probe", []byte("ok"))
}

// Client is an S3 client on the server, for the test's own setup and
// for tampering with stored objects.
func (s *S3Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Config{Endpoint: s.Endpoint, AccessKey: s.AccessKey, SecretKey: s.SecretKey})
}

// MakeBucket creates a bucket, waiting for the new server to take writes.
func (s *S3Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// FlipByte changes the middle byte of a stored object behind gitopsd's
// back, as bit rot would.
func (s *S3Server) FlipByte(t testing.TB, bucket, key string) {
	t.Helper()
	cli := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body, _, err := cli.GetObject(ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(body)
	body.Close()
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	data[len(data)/2] ^= 0x01
	if err := cli.PutObject(ctx, bucket, key, data); err != nil {
		t.Fatalf("rewrite %s: %v", key, err)
	}
}

// CredentialsFile writes a remote credentials file for this server and
// returns its path.
func (s *S3Server) CredentialsFile(t testing.TB) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "remote.env")
	content := "AWS_ACCESS_KEY_ID=" + s.AccessKey + "\nAWS_SECRET_ACCESS_KEY=" + s.SecretKey + "\nAWS_REGION=us-east-1\nS3_INSECURE=true\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// URL is the remote URL of prefix in bucket.
func (s *S3Server) URL(bucket, prefix string) string {
	return "s3://" + s.Endpoint + "/" + bucket + "/" + prefix
}

// Stop kills the server, as when it goes away; the data stays for Start.
func (s *S3Server) Stop() {
	s.t.Helper()
	if err := s.proc.stop(); err != nil {
		s.t.Fatal(err)
	}
}

// Freeze stops the server without ending it (SIGSTOP): connections stay
// open and nothing answers, as with a hung server.
func (s *S3Server) Freeze() { s.proc.signal(syscall.SIGSTOP) }

// Thaw lets a frozen server run on (SIGCONT).
func (s *S3Server) Thaw() { s.proc.signal(syscall.SIGCONT) }

// Log is the server's own log so far (its tail), for a failing test.
func (s *S3Server) Log() string { return s.proc.log() }

// ensureSeaweed returns the weed binary, built the first time into a
// cache folder (cachedTool).
func ensureSeaweed(t testing.TB) (string, error) {
	return cachedTool(t, "seaweedfs", seaweedVersion, "weed", buildSeaweed)
}

// buildSeaweed builds weed inside its own module, as downloaded from the
// proxy: its go.mod has replace directives, which `go install pkg@version`
// refuses (buildFromProxy).
func buildSeaweed(dir, bin string) error {
	return buildFromProxy(dir, bin, seaweedModule, seaweedVersion, "./weed")
}
