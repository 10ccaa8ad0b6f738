package auth_test

import (
	"testing"

	"github.com/heraldhq/herald/services/auth"
	"github.com/heraldhq/herald/services/auth/authtest"
)

func TestMemoryStore(t *testing.T) {
	t.Parallel()
	authtest.RunStore(t, func(*testing.T) auth.Store { return auth.NewMemoryStore() })
}
