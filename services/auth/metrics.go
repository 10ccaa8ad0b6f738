package auth

import (
	"errors"

	"github.com/heraldhq/herald/pkg/metrics"
)

// observeLogin records one password login by its result.
func observeLogin(err *error) {
	result := "ok"
	switch {
	case *err == nil:
	case errors.Is(*err, ErrTooManyAttempts):
		result = "rate_limited"
		metrics.AuthRateLimited.Inc()
	case errors.Is(*err, ErrBadCredentials):
		result = "denied"
	case errors.Is(*err, ErrInvalidRequest):
		result = "invalid"
	default:
		result = "error"
	}
	metrics.AuthLogins.WithLabelValues(result).Inc()
}

// observeVerify records one token verification by its result.
func observeVerify(err error) {
	result := "valid"
	if err != nil {
		result = "invalid"
	}
	metrics.AuthTokensVerified.WithLabelValues(result).Inc()
}
