package secrets

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// ReadFile reads the file p, which may hold secrets, refusing what is not a
// regular file or holds more than limit bytes, before reading it: a device
// such as /dev/zero would be read without end (its size says 0), and a
// FIFO is opened without waiting for a writer, then refused. The caller
// has judged p already; this holds if p changed since.
func ReadFile(p string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", p)
	case st.Size() > limit:
		return nil, fmt.Errorf("%s is %d bytes, over the limit of %d", p, st.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s grew over the limit of %d bytes while it was read", p, limit)
	}
	return data, nil
}
