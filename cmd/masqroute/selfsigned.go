package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// With -self-signed (and -dev) the proxy is its own small CA: a CA
// certificate that clients trust with -ca, and a server certificate for the
// listen host that the CA signs at every start. With -dev-dir the CA is
// kept on disk and used again, so the -ca file a client was given stays
// good across restarts and -listen changes; without it the CA lives as long
// as the process.

const (
	caValidity     = 365 * 24 * time.Hour
	caRenewBefore  = 7 * 24 * time.Hour // a kept CA closer to its end than this is replaced
	leafValidity   = 30 * 24 * time.Hour
	caCertFileName = "ca.pem"
	caKeyFileName  = "ca-key.pem"
)

// A selfSignedCA signs the certificates a self-signed proxy serves.
type selfSignedCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte // cert in PEM, what clients trust
}

// newSelfSignedCA makes a CA with an ECDSA P-256 key.
func newSelfSignedCA() (*selfSignedCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "masqroute self-signed CA", Organization: []string{"masqroute"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &selfSignedCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// issue makes a server certificate for hosts (IP addresses or DNS names),
// signed by ca.
func (ca *selfSignedCA) issue(hosts []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(leafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"masqroute"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// loadOrMakeCA returns the CA kept in dir, or makes one and keeps it there
// (the directory 0700, the key 0600) when dir has none or its CA is near
// its end. made says which. A CA that is there but unreadable is an error,
// not something to overwrite.
func loadOrMakeCA(dir string) (ca *selfSignedCA, made bool, err error) {
	certPath, keyPath := filepath.Join(dir, caCertFileName), filepath.Join(dir, caKeyFileName)
	ca, err = loadCA(certPath, keyPath)
	switch {
	case err == nil && time.Until(ca.cert.NotAfter) > caRenewBefore:
		return ca, false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("-dev-dir: %w (remove %s and %s to make a new CA)", err, certPath, keyPath)
	}
	if ca, err = newSelfSignedCA(); err != nil {
		return nil, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("-dev-dir: %w", err)
	}
	// The key first: a cert.pem without its key would be read as broken.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, false, fmt.Errorf("-dev-dir: %w", err)
	}
	if err := writeFileAtomic(certPath, ca.pem, 0o600); err != nil {
		return nil, false, fmt.Errorf("-dev-dir: %w", err)
	}
	return ca, true, nil
}

// loadCA reads a CA certificate and its key; a missing file is an
// fs.ErrNotExist.
func loadCA(certPath, keyPath string) (*selfSignedCA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM) // checks that the key is the certificate's
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	signer, ok := kp.PrivateKey.(crypto.Signer)
	if !cert.IsCA || !ok {
		return nil, fmt.Errorf("%s: not a CA certificate", certPath)
	}
	return &selfSignedCA{cert: cert, key: signer, pem: certPEM}, nil
}

// writeFileAtomic writes data to a temporary file in path's directory and
// renames it over path, so a reader sees the old file or the new one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing to remove
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
