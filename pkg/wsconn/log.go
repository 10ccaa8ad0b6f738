package wsconn

import (
	"context"
	"log/slog"
)

// principalHandler adds the connection's principal to the records it handles. Logger.With
// would copy the handler's preformatted state for every connection, a few hundred bytes each
// for 10k idle connections that mostly never log; this adds the attribute only to a record
// that is written. The principal comes after the record's own attributes.
type principalHandler struct {
	slog.Handler
	principal string
}

func (h *principalHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(slog.String("principal", h.principal))
	return h.Handler.Handle(ctx, r)
}

func (h *principalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &principalHandler{Handler: h.Handler.WithAttrs(attrs), principal: h.principal}
}

// WithGroup puts the principal in front, outside the group, where With would have put it.
func (h *principalHandler) WithGroup(name string) slog.Handler {
	return h.Handler.WithAttrs([]slog.Attr{slog.String("principal", h.principal)}).WithGroup(name)
}
