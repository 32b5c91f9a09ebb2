// Package ifwatch tells when the addresses of the host's interfaces may
// have changed, so that a list read from them can be read again.
//
// On Linux it subscribes to rtnetlink's address groups
// (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR): the kernel sends a message for
// every address added or removed, and Watch calls back for each batch it
// reads. It does not parse the messages: any of them means "read the
// addresses again", and so does a lost one (ENOBUFS, the socket's buffer
// overflowed). Elsewhere, or where the subscription fails, Watch calls back
// every PollInterval instead.
package ifwatch

import (
	"context"
	"errors"
	"io"
	"time"
)

// PollInterval is how often Watch calls back where it cannot subscribe to
// address changes.
const PollInterval = 30 * time.Second

// Watch calls changed whenever an address may have been added to or removed
// from one of the host's interfaces, on its own goroutine, one call at a
// time, until ctx ends; then it returns ctx's error. It calls changed once
// as soon as it watches, so that a change made before the subscription
// existed is not lost. changed should not block for long: notifications
// queue in the kernel meanwhile, and past the socket's buffer they are
// lost (which Watch reports as one more change).
func Watch(ctx context.Context, changed func()) error {
	if sub, err := subscribe(); err == nil {
		changed()
		_ = watch(ctx, sub, changed) // ends with ctx, or when the subscription fails
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The subscription failed: poll, from a fresh read on.
	}
	changed()
	return poll(ctx, PollInterval, changed)
}

// watch reads sub until ctx ends or a read fails with anything but
// errLost, calling changed after each read. It closes sub.
func watch(ctx context.Context, sub io.ReadCloser, changed func()) error {
	stop := context.AfterFunc(ctx, func() { sub.Close() }) // unblocks Read
	defer func() {
		if stop() {
			sub.Close()
		}
	}()
	buf := make([]byte, 64<<10) // more than one datagram of rtnetlink messages
	for {
		_, err := sub.Read(buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, errLost) {
			return err
		}
		changed()
	}
}

// poll calls changed every interval until ctx ends.
func poll(ctx context.Context, interval time.Duration, changed func()) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			changed()
		}
	}
}
