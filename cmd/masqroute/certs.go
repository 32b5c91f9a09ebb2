package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// A certStore holds the certificate the proxy presents. Every TLS handshake
// reads it through GetCertificate; load replaces it. A connection keeps the
// certificate it shook hands with, so a reload reaches new connections only
// and tunnels on open ones go on undisturbed.
type certStore struct {
	certFile, keyFile string // "" for a self-signed certificate: nothing to reload

	// cur is never nil once the store is made. A Store synchronizes before
	// any Load (handshake) that observes it.
	cur atomic.Pointer[tls.Certificate]
}

// loadCertStore reads -cert and -key into a new store.
func loadCertStore(certFile, keyFile string) (*certStore, error) {
	s := &certStore{certFile: certFile, keyFile: keyFile}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// staticCertStore is a store that serves kp and has nothing to reload.
func staticCertStore(kp *tls.Certificate) *certStore {
	s := &certStore{}
	s.cur.Store(kp) // publish before the store is handed out
	return s
}

// load reads the certificate and key files again. On any error the
// certificate being served stays.
func (s *certStore) load() error {
	if s.certFile == "" {
		return errors.New("no certificate files to reload")
	}
	kp, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return err
	}
	if len(kp.Certificate) == 0 {
		return fmt.Errorf("%s: no certificate", s.certFile)
	}
	if kp.Leaf == nil {
		if kp.Leaf, err = x509.ParseCertificate(kp.Certificate[0]); err != nil {
			return err
		}
	}
	s.cur.Store(&kp) // publish the whole pair: handshakes from now on serve it
	return nil
}

// leaf is the certificate being served.
func (s *certStore) leaf() *x509.Certificate { return s.cur.Load().Leaf }

// serverTLS is a server configuration that serves the store's current
// certificate at every handshake.
func (s *certStore) serverTLS() *tls.Config {
	return &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cur.Load(), nil },
		MinVersion:     tls.VersionTLS13,
	}
}
