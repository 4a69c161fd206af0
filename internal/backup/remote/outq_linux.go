package remote

import (
	"net"

	"golang.org/x/sys/unix"
)

// unsent is how many bytes c's socket still holds to send (SIOCOUTQ), or
// -1 when that cannot be told.
func unsent(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = rc.Control(func(fd uintptr) {
		if q, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = q
		}
	})
	return n
}
