// Package bufpool is a typed pool of fixed-size buffers with a double-put
// check: the one pool type masqroute's buffer pools are built on.
package bufpool

import "sync"

// Flag marks a buffer as free while it sits in a Pool. Embed it in the
// buffer type; only its owner touches it, so a plain bool serves, and two
// goroutines that both think they own a buffer race on it (the race
// detector says so).
type Flag struct{ free bool }

func (f *Flag) flag() *Flag { return f }

// A Pool pools *T, where T embeds Flag. It is backed by sync.Pool and stores
// pointers, so Get and Put do not allocate once the pool is warm; like
// sync.Pool it is unbounded, holding what was Put until the garbage
// collector trims it. The zero value is ready to use; a Pool must not be
// copied after first use.
//
// Size T so that it fills an allocator size class (2048 bytes, say): a
// buffer a few bytes over one lands in the next, a quarter larger.
type Pool[T any, PT interface {
	*T
	flag() *Flag
}] struct {
	p sync.Pool
}

// Get returns a buffer the caller now owns. Its contents are whatever the
// last owner left.
func (p *Pool[T, PT]) Get() PT {
	b, _ := p.p.Get().(PT)
	if b == nil {
		return PT(new(T))
	}
	b.flag().free = false
	return b
}

// Put gives b back; the caller must not touch it afterwards. Put panics if
// b is already in the pool: a buffer put twice would be handed to two
// owners. The check is always on (it costs one bool); it catches a second
// Put before the next Get, not a Put of a buffer that has since gone to a
// new owner. Put clears nothing: a caller that must clear does so first.
func (p *Pool[T, PT]) Put(b PT) {
	f := b.flag()
	if f.free {
		panic("bufpool: buffer put twice")
	}
	f.free = true
	p.p.Put(b)
}
