package testutil_test

import (
	"bufio"
	"net"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testutil"
)

func TestProxyForwardsCutsAndRestores(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for i := 0; i < 10; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				line, _ := bufio.NewReader(c).ReadString('\n')
				_, _ = c.Write([]byte("echo " + line))
				c.Close()
			}()
		}
	}()
	p := testutil.StartProxy(t, ln.Addr().String())
	roundTrip := func() (string, error) {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("hi\n")); err != nil {
			return "", err
		}
		return bufio.NewReader(c).ReadString('\n')
	}
	if got, err := roundTrip(); got != "echo hi\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	p.Cut()
	if got, err := roundTrip(); err == nil {
		t.Fatalf("cut proxy answered %q", got)
	}
	p.Restore()
	if got, err := roundTrip(); got != "echo hi\n" {
		t.Fatalf("restored proxy: %q, %v", got, err)
	}
}
