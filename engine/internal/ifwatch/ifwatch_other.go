//go:build !linux

package ifwatch

import (
	"errors"
	"io"
)

// errLost is never returned where there is no subscription.
var errLost = errors.New("ifwatch: notifications lost")

// subscribe fails: only Linux has a subscription here, so Watch polls.
func subscribe() (io.ReadCloser, error) { return nil, errors.ErrUnsupported }
