package format

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWrite measures Write's throughput over 64 MiB of tar: half
// random (incompressible, as media and encrypted files are), half
// log-like text (compressible), in 2 MiB files.
func BenchmarkWrite(b *testing.B) {
	const fileSize, files = 2 << 20, 32
	entries := []testEntry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755}}}
	for i := range files {
		var content []byte
		if i%2 == 0 {
			content = randomBytes(uint64(i), fileSize)
		} else {
			var text bytes.Buffer
			for n := 0; text.Len() < fileSize; n++ {
				fmt.Fprintf(&text, "2025-03-01T12:%02d:%02dZ INFO request %d served in %dms\n", n/60%60, n%60, n, n%97)
			}
			content = text.Bytes()[:fileSize]
		}
		entries = append(entries, testEntry{
			hdr:     tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("data/file%02d", i), Mode: 0o644, Size: int64(len(content))},
			content: content,
		})
	}
	raw := tarOf(b, entries)
	root := b.TempDir()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dir := filepath.Join(root, fmt.Sprint(i))
		i++
		m, err := Write(context.Background(), dir, bytes.NewReader(raw), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(m.ArchiveSize)/float64(len(raw)), "ratio")
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
