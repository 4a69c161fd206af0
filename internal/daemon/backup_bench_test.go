package daemon

import (
	"archive/tar"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// benchVolumeBytes is the size of the volume BenchmarkSnapshot1GiB snapshots.
const benchVolumeBytes = 1 << 30

// BenchmarkSnapshot1GiB measures a snapshot and a level-2 restore test of
// a 1 GiB volume (16 files of 64 MiB, half random and half text-like, so
// zstd has both kinds of work), as ratios to `tar -c | zstd` of the same
// volume's folder in the same run, and the peak RSS the snapshot adds to
// this process.
func BenchmarkSnapshot1GiB(b *testing.B) {
	skipWithoutTime(b)
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("zstd is not installed: the baseline is tar -c | zstd (apt-get install zstd)")
	}
	for range b.N {
		h := newHarness(b, nil)
		name := testenv.Project(b, "bench-bak")
		testenv.CleanupHelpers(b, name)
		h.repo.Commit(b, "v1", map[string]string{"stacks/" + name + "/compose.yaml": testenv.BackupStack(h.image, 1)})
		h.mustReconcile()
		ctx := context.Background()
		volume := name + "_data"
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeBenchTree(pw)) }()
		if err := h.d.engine.WriteVolume(ctx, volume, pr, nil); err != nil {
			b.Fatalf("fill the volume: %v", err)
		}
		st, cfg, err := h.d.loadStack(ctx, name)
		if err != nil {
			b.Fatal(err)
		}

		resetPeakRSS()
		before := peakRSS()
		began := time.Now()
		sn, err := h.d.backups.Snapshot(ctx, st, cfg, "data", backup.TriggerManual, "")
		if err != nil {
			b.Fatal(err)
		}
		snapTook := time.Since(began)
		rss := peakRSS() - before
		began = time.Now()
		if _, err := h.d.backups.Test(ctx, st, cfg, "data", sn.ID, 2, backup.TriggerManual); err != nil {
			b.Fatal(err)
		}
		testTook := time.Since(began)

		mount, err := h.docker.VolumeInspect(ctx, volume, client.VolumeInspectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		out := filepath.Join(b.TempDir(), "baseline.tar.zst")
		began = time.Now()
		cmd := exec.Command("sh", "-c", `tar -cf - -C "$1" . | zstd -q -c > "$2"`, "sh", mount.Volume.Mountpoint, out)
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar | zstd: %v: %s", err, msg)
		}
		baseTook := time.Since(began)
		baseSize := fileSize(b, out)

		mb := float64(benchVolumeBytes) / 1e6
		b.ReportMetric(mb/snapTook.Seconds(), "MB/s-snapshot")
		b.ReportMetric(mb/testTook.Seconds(), "MB/s-level2-test")
		b.ReportMetric(mb/baseTook.Seconds(), "MB/s-tar-zstd")
		b.ReportMetric(baseTook.Seconds()/snapTook.Seconds(), "snapshot/tar-zstd-speed")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss-added")
		b.Logf("1 GiB volume: snapshot %s (%.0f MB/s, archive %d MiB), level-2 test %s (%.0f MB/s), tar|zstd %s (%.0f MB/s, %d MiB): snapshot at %.2fx the speed of tar|zstd; peak RSS +%d MiB",
			snapTook.Round(time.Millisecond), mb/snapTook.Seconds(), sn.SizeBytes>>20, testTook.Round(time.Millisecond), mb/testTook.Seconds(),
			baseTook.Round(time.Millisecond), mb/baseTook.Seconds(), baseSize>>20, baseTook.Seconds()/snapTook.Seconds(), rss>>20)
	}
}

// writeBenchTree writes the benchmark's volume as a tar stream under "v/".
func writeBenchTree(w io.Writer) error {
	tw := tar.NewWriter(w)
	const files = 16
	size := int64(benchVolumeBytes / files)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	line := []byte("2026-11-23T12:00:00Z level=INFO msg=\"request served\" path=/api/items status=200 took=3ms\n")
	if err := tw.WriteHeader(&tar.Header{Name: "v/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
		return err
	}
	for i := range files {
		if err := tw.WriteHeader(&tar.Header{Name: "v/file-" + strconv.Itoa(i), Mode: 0o644, Size: size, ModTime: time.Now()}); err != nil {
			return err
		}
		for written := int64(0); written < size; written += int64(len(chunk)) {
			if i%2 == 0 {
				for j := 0; j < len(chunk); j += 8 {
					v := rng.Uint64()
					for k := 0; k < 8; k++ {
						chunk[j+k] = byte(v >> (8 * k))
					}
				}
			} else {
				for j := 0; j < len(chunk); j += len(line) {
					copy(chunk[j:], line)
				}
			}
			if _, err := tw.Write(chunk); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// resetPeakRSS resets the kernel's high-water mark of this process's RSS.
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is this process's RSS high-water mark in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func fileSize(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}
