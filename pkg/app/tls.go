package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultTLSPoll is how often a Certificate from files checks them for a change.
const DefaultTLSPoll = 5 * time.Second

// Certificate is a server certificate that can change while the process runs: from a
// cert/key file pair, re-read on SIGHUP and when either file changes, or generated once
// (SelfSigned). Its TLSConfig hands the current certificate to every new handshake, so a
// renewed certificate needs no restart and open connections are not touched.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string // size and mtime of both files at the last load
	changed chan struct{}
}

// LoadCertificate reads a PEM certificate (chain) and key. A nil log discards.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the files; on an error the certificate in use stays.
func (c *Certificate) Reload() error {
	if c.certFile == "" {
		return nil // generated: nothing to re-read
	}
	stamp := c.fileStamp()
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.mu.Lock()
	c.cert, c.stamp = &cert, stamp
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	c.mu.Unlock()
	return nil
}

// fileStamp sums up both files' size and modification time; a changed stamp means reload.
func (c *Certificate) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// Changed returns a channel closed at the next successful reload (tests wait on it).
func (c *Certificate) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// Current is the certificate new handshakes get.
func (c *Certificate) Current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

// Fingerprint is the SHA-256 of the leaf certificate (DER), as hex pairs with colons, the
// form browsers and `openssl x509 -fingerprint -sha256` show.
func (c *Certificate) Fingerprint() string {
	cur := c.Current()
	if cur == nil || len(cur.Certificate) == 0 {
		return ""
	}
	sum := sha256.Sum256(cur.Certificate[0])
	return strings.ToUpper(strings.Join(splitPairs(hex.EncodeToString(sum[:])), ":"))
}

func splitPairs(s string) []string {
	out := make([]string, 0, len(s)/2)
	for i := 0; i+1 < len(s); i += 2 {
		out = append(out, s[i:i+2])
	}
	return out
}

// TLSConfig is a server configuration with TLS 1.2 or later and this certificate. nextProtos
// are the ALPN protocols ("h2", "http/1.1" for HTTP; "h2" for gRPC).
func (c *Certificate) TLSConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.Current(), nil
		},
	}
}

// Run reloads the files on SIGHUP and whenever their size or modification time changes
// (checked every poll; 0 means DefaultTLSPoll), until ctx is done. A failed reload is
// logged and the certificate in use stays, so a half-written file never breaks serving.
func (c *Certificate) Run(ctx context.Context, poll time.Duration) error {
	if c.certFile == "" {
		<-ctx.Done()
		return nil
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(orDuration(poll, DefaultTLSPoll))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			c.reloadLogged("SIGHUP")
		case <-t.C:
			c.mu.Lock()
			same := c.stamp == c.fileStamp()
			c.mu.Unlock()
			if !same {
				c.reloadLogged("file changed")
			}
		}
	}
}

func (c *Certificate) reloadLogged(why string) {
	if err := c.Reload(); err != nil {
		c.log.Error("tls certificate not reloaded; the previous one stays", "cause", why, "err", err)
		return
	}
	c.log.Info("tls certificate reloaded", "cause", why, "sha256", c.Fingerprint())
}

// SelfSigned generates a certificate for 127.0.0.1, ::1 and localhost, valid for validFor,
// for development only: clients must skip verification or pin its Fingerprint.
func SelfSigned(validFor time.Duration) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls: serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Herald development"}, CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls: self-sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tls: parse generated certificate: %w", err)
	}
	return &Certificate{log: slog.New(slog.DiscardHandler),
		cert: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}, nil
}

// CertPool is a pool holding this certificate's leaf, for clients that trust it (tests, or
// a client pinned to a development certificate).
func (c *Certificate) CertPool() (*x509.CertPool, error) {
	cur := c.Current()
	if cur == nil || len(cur.Certificate) == 0 {
		return nil, errors.New("tls: no certificate")
	}
	leaf, err := x509.ParseCertificate(cur.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls: parse certificate: %w", err)
	}
	p := x509.NewCertPool()
	p.AddCert(leaf)
	return p, nil
}

// WritePEM writes the certificate and its key as PEM files (the key readable by the owner
// only), for example to hand a generated development certificate to a client to trust.
func (c *Certificate) WritePEM(certFile, keyFile string) error {
	cur := c.Current()
	if cur == nil {
		return errors.New("tls: no certificate")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cur.PrivateKey)
	if err != nil {
		return fmt.Errorf("tls: marshal key: %w", err)
	}
	var certPEM []byte
	for _, der := range cur.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("tls: write key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("tls: write certificate: %w", err)
	}
	return nil
}
