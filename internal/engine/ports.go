package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"syscall"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// PortsInUse lists the host ports spec publishes that another process of
// this host holds now ("127.0.0.1:8080/tcp"): the engine would fail the
// container's start with "bind: address already in use". A stop-first roll
// asks before it stops the working container, which a start that cannot
// succeed would take down for nothing. Ports the container freedBy
// publishes are left out: stopping it frees them.
//
// Each port is bound for an instant in gitopsd's own network namespace.
// Only "address in use" counts: where that namespace is not the host's
// (gitopsd in a container), or a port cannot be bound for another reason,
// the port counts as free and the start itself is the check.
func (e *Engine) PortsInUse(ctx context.Context, spec ContainerSpec, freedBy string) ([]string, error) {
	if spec.HostConfig == nil || len(spec.HostConfig.PortBindings) == 0 {
		return nil, nil
	}
	freed := map[string]bool{}
	if freedBy != "" {
		res, err := e.cli.ContainerInspect(ctx, freedBy, client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("inspect container %s: %w", ids.Short(freedBy), err)
		}
		for _, b := range hostPorts(res.Container.HostConfig) {
			freed[b.proto+"/"+strconv.Itoa(b.port)] = true
		}
	}
	var inUse []string
	for _, b := range hostPorts(spec.HostConfig) {
		if freed[b.proto+"/"+strconv.Itoa(b.port)] {
			continue
		}
		if b.taken() {
			inUse = append(inUse, b.String())
		}
	}
	sort.Strings(inUse)
	return inUse, nil
}

// hostPort is one fixed host port a container publishes.
type hostPort struct {
	ip    netip.Addr // invalid: every address
	port  int
	proto string
}

func (b hostPort) String() string { return b.addr() + "/" + b.proto }

// addr is the address to bind: the binding's host IP, or every address.
func (b hostPort) addr() string {
	ip := "0.0.0.0"
	if b.ip.IsValid() {
		ip = b.ip.String()
	}
	return net.JoinHostPort(ip, strconv.Itoa(b.port))
}

// taken says whether binding the port fails because something holds it.
func (b hostPort) taken() bool {
	addr := b.addr()
	var err error
	switch b.proto {
	case "tcp":
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			_ = l.Close()
		}
	case "udp":
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", addr); err == nil {
			_ = c.Close()
		}
	default:
		return false // sctp: not ours to probe
	}
	return errors.Is(err, syscall.EADDRINUSE)
}

// hostPorts are the fixed host ports of a container's bindings; an
// ephemeral one (no host port, or 0) or a range cannot clash in advance.
func hostPorts(hc *container.HostConfig) []hostPort {
	if hc == nil {
		return nil
	}
	var out []hostPort
	for p, bs := range hc.PortBindings {
		for _, b := range bs {
			n, err := strconv.Atoi(b.HostPort)
			if err != nil || n <= 0 {
				continue
			}
			hp := hostPort{port: n, proto: string(p.Proto())}
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				hp.ip = b.HostIP
			}
			out = append(out, hp)
		}
	}
	return out
}
