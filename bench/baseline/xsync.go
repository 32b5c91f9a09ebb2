package baseline

import "github.com/puzpuzpuz/xsync/v3"

// xsyncMapOf is an xsync.MapOf (a modified Cache-Line Hash Table with
// lock-free reads) for mapRouter.
type xsyncMapOf struct {
	m *xsync.MapOf[uint64, *chanSession]
}

func (m xsyncMapOf) Load(k uint64) (*chanSession, bool)          { return m.m.Load(k) }
func (m xsyncMapOf) Store(k uint64, s *chanSession)              { m.m.Store(k, s) }
func (m xsyncMapOf) LoadAndDelete(k uint64) (*chanSession, bool) { return m.m.LoadAndDelete(k) }
func (m xsyncMapOf) Delete(k uint64)                             { m.m.Delete(k) }
func (m xsyncMapOf) Range(f func(uint64, *chanSession) bool)     { m.m.Range(f) }

// NewXsync returns a router built on xsync.MapOf and a channel per session
// (see mapRouter).
func NewXsync(cfg Config) Router {
	return &mapRouter[xsyncMapOf]{cfg: cfg.withDefaults(), sessions: xsyncMapOf{xsync.NewMapOf[uint64, *chanSession]()}}
}
