package remote

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkRemoteS3Throughput measures upload (Put) and download (Get) of
// one file against the local SeaweedFS, beside `cat` of the same bytes to
// the same disk as the baseline: the MB/s metrics say what the S3 path
// costs over a plain copy, with nothing asserted. The size is 256 MiB, or
// GITOPSD_BENCH_REMOTE_MIB.
func BenchmarkRemoteS3Throughput(b *testing.B) {
	size := int64(256) << 20
	if v := os.Getenv("GITOPSD_BENCH_REMOTE_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("GITOPSD_BENCH_REMOTE_MIB=%q is not a positive number", v)
		}
		size = int64(n) << 20
	}
	s := testenv.StartS3(b)
	s.MakeBucket(b, "bench")
	ctx := context.Background()
	r, err := Open(ctx, s.URL("bench", ""), s.CredentialsFile(b), DefaultTimeouts)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	// Random bytes, as a compressed (or encrypted) archive is.
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	var up, down, cat time.Duration
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		name := "bench/" + strconv.Itoa(i)
		start := time.Now()
		if err := putFile(ctx, r, name, src); err != nil {
			b.Fatal(err)
		}
		up += time.Since(start)

		start = time.Now()
		rc, err := r.Get(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, "down"))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(out, rc)
		rc.Close()
		if err == nil {
			err = out.Sync()
		}
		out.Close()
		if err != nil || n != size {
			b.Fatalf("download: %d bytes, %v", n, err)
		}
		down += time.Since(start)

		start = time.Now()
		// The baseline writes to the disk the server stores on, and
		// syncs, as the download does.
		c := exec.Command("sh", "-c", `cat "$1" > "$2" && sync "$2"`, "sh", src, filepath.Join(dir, "cat"))
		if out, err := c.CombinedOutput(); err != nil {
			b.Fatalf("cat: %v\n%s", err, out)
		}
		cat += time.Since(start)

		b.StopTimer()
		if err := r.DeleteAll(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	n := time.Duration(b.N)
	b.ReportMetric(mbps(up/n), "upload_MB/s")
	b.ReportMetric(mbps(down/n), "download_MB/s")
	b.ReportMetric(mbps(cat/n), "cat_MB/s")
}
