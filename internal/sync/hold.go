package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/health"
)

// StartError is a new container of a revision that the engine would not
// create or start: a host port another process holds ("bind: address
// already in use"), a bind mount whose source is missing, a device that is
// not there. Such a revision fails the same way at every attempt, and an
// attempt of a stop-first roll stops the working container first, so it is
// held like one that failed its health gate (see Holds).
type StartError struct {
	Container string // the container's name
	Err       error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("container %s could not be started: %v", e.Container, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// startFailed wraps err, a failure to create or start the container name,
// as a StartError, unless it says nothing of the revision: the engine could
// not be reached, or the reconcile was cut off. Those are tried again at the
// next poll.
func startFailed(name string, err error) error {
	if err == nil || client.IsErrConnectionFailed(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &StartError{Container: name, Err: err}
}

// IsStartFailure reports whether err says a new container of the revision
// could not be created or started.
func IsStartFailure(err error) bool {
	var se *StartError
	return errors.As(err, &se)
}

// Holds reports whether a failed roll holds its revision: polls leave it
// alone until the stack's folder changes or `sync --retry`. A failed health
// gate and a container that could not be started hold it; an engine or a
// store that could not be reached does not.
func Holds(err error) bool {
	return health.IsFailure(err) || IsStartFailure(err)
}
