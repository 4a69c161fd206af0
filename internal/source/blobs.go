package source

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// replaceWith removes what is at path (if exists) and makes it anew.
func replaceWith(path string, exists bool, make func() error) error {
	if exists {
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	return make()
}

// sameBlob says whether the regular file at path holds e's blob with e's
// mode: its size, permissions and Git object hash.
func sameBlob(path string, fi fs.FileInfo, e treeEntry) (bool, error) {
	if fi.Size() != e.size || fi.Mode().Perm() != fileMode(e.mode) {
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := plumbing.NewHasher(plumbing.BlobObject, e.size)
	n, err := io.Copy(h, io.LimitReader(f, e.size+1))
	if err != nil {
		return false, err
	}
	return n == e.size && h.Sum() == e.hash, nil
}

func isFile(m filemode.FileMode) bool {
	return m == filemode.Regular || m == filemode.Deprecated || m == filemode.Executable
}

func fileMode(m filemode.FileMode) os.FileMode {
	if m == filemode.Executable {
		return 0o755
	}
	return 0o644
}

// blobSize reads a blob's size from its header, not its content.
func blobSize(objects storer.EncodedObjectStorer, h plumbing.Hash) (int64, error) {
	if sizer, ok := objects.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		return sizer.EncodedObjectSize(h)
	}
	o, err := objects.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return 0, err
	}
	return o.Size(), nil
}

// checkPath refuses tree paths that git itself would refuse to check out,
// since a crafted tree could otherwise write outside the export folder or
// plant a .git folder in it.
func checkPath(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) || strings.ContainsRune(name, '\\') {
		return fmt.Errorf("refusing unsafe path %q in tree", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." || strings.EqualFold(part, ".git") {
			return fmt.Errorf("refusing unsafe path %q in tree", name)
		}
	}
	return nil
}

// writeBlob creates path with e's content and mode.
func writeBlob(objects storer.EncodedObjectStorer, e treeEntry, path string) error {
	// O_EXCL: a tree listing the same name twice is an error, not an overwrite.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode(e.mode))
	if err != nil {
		return err
	}
	return fillBlob(objects, e, f)
}

// rewriteBlob puts e's content and mode into the existing regular file at
// path, keeping its inode.
func rewriteBlob(objects storer.EncodedObjectStorer, e treeEntry, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	return fillBlob(objects, e, f)
}

// fillBlob copies e's blob into f, at most the size the plan checked, sets
// e's mode and closes f.
func fillBlob(objects storer.EncodedObjectStorer, e treeEntry, f *os.File) error {
	b, err := object.GetBlob(objects, e.hash)
	if err != nil {
		f.Close()
		return err
	}
	r, err := b.Reader()
	if err != nil {
		f.Close()
		return err
	}
	defer r.Close()
	if _, err := io.Copy(f, io.LimitReader(r, e.size)); err != nil {
		f.Close()
		return err
	}
	// The umask must not decide whether a script stays executable.
	if err := f.Chmod(fileMode(e.mode)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readBlob(objects storer.EncodedObjectStorer, h plumbing.Hash) (string, error) {
	b, err := object.GetBlob(objects, h)
	if err != nil {
		return "", err
	}
	r, err := b.Reader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	return string(data), err
}

// touch marks a checkout as just used, so Prune's "newest" means the
// revisions gitopsd ran most recently rather than the ones exported last.
func touch(p string) {
	now := time.Now()
	_ = os.Chtimes(p, now, now)
}

// humanBytes prints a size the way people write limits: 64 MiB, 1.5 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB"}[exp]
}
