package access

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldhq/herald/pkg/token"
	"github.com/heraldhq/herald/pkg/wsconn"
)

func TestWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		claims := token.Claims{ExpiresAt: now.Add(time.Hour)}
		var tokenFired, passwordFired atomic.Bool
		Session{Claims: claims}.Watch(now, func(wsconn.Disconnect) { tokenFired.Store(true) })
		Session{Claims: claims, Password: true}.Watch(now, func(wsconn.Disconnect) { passwordFired.Store(true) })
		stop := Session{Claims: claims}.Watch(now, func(wsconn.Disconnect) { t.Error("a stopped expiry fired") })
		stop()

		time.Sleep(59 * time.Minute) // fake time inside the bubble
		synctest.Wait()
		if tokenFired.Load() {
			t.Fatal("expired before its time")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if !tokenFired.Load() {
			t.Fatal("a token session was not expired")
		}
		if passwordFired.Load() {
			t.Fatal("a password session was expired by its internal token")
		}
	})
}
