package ingest

import (
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// jobNew is the Object of jobs.new.<jid>, shaped like Salt's salt/job/<jid>/new.
type jobNew struct {
	JID       string   `json:"jid"`
	Tgt       string   `json:"tgt"`
	TgtType   string   `json:"tgt_type"`
	Fun       string   `json:"fun"`
	Arg       []string `json:"arg"`
	Minions   []string `json:"minions"`
	User      string   `json:"user"` // the bare user name ("admin"), as Salt writes it
	StartTime string   `json:"start_time"`
}

// jobRet is the Object of jobs.ret.<jid>, shaped like Salt's salt/job/<jid>/ret/<minion>.
type jobRet struct {
	JID        string `json:"jid"`
	ID         string `json:"id"`
	Fun        string `json:"fun"`
	Return     any    `json:"return"`
	Retcode    int    `json:"retcode"`
	Success    bool   `json:"success"`
	DurationMs int64  `json:"duration_ms"`
}

// jobFun is the Salt function name and arguments of a request.
func jobFun(req agentwire.RPCRequest) (string, []string) {
	if req.Kind == agentwire.KindDocker {
		arg := []string{req.ContainerID}
		if req.Action == agentwire.ActionLogs && req.Tail > 0 {
			arg = append(arg, fmt.Sprintf("tail=%d", req.Tail))
		}
		return "docker." + req.Action, arg
	}
	return "cmd.run", []string{req.Command}
}

// jobUser is the user name of a principal ("user:admin" is "admin"); other principals are
// kept whole, so a job started by something else still says who.
func jobUser(principal string) string {
	if name, ok := strings.CutPrefix(principal, "user:"); ok {
		return name
	}
	return principal
}

func (s *Service) emitJobNew(serverID string, req agentwire.RPCRequest, start time.Time) {
	fun, arg := jobFun(req)
	s.emit("jobs", "new", req.ID, req.Principal, jobNew{
		JID: req.ID, Tgt: serverID, TgtType: "list", Fun: fun, Arg: arg,
		Minions: []string{serverID}, User: jobUser(req.Principal), StartTime: start.UTC().Format(time.RFC3339Nano),
	})
}

func (s *Service) emitJobRet(serverID string, req agentwire.RPCRequest, r agentwire.RPCReply) {
	fun, _ := jobFun(req)
	ret := jobRet{JID: req.ID, ID: serverID, Fun: fun, DurationMs: r.DurationMs}
	switch {
	case r.Code != "":
		ret.Return, ret.Retcode, ret.Success = r.Error, 1, false
	case req.Kind == agentwire.KindDocker && req.Action == agentwire.ActionLogs && r.Success:
		ret.Return, ret.Success = r.Logs, true
	case req.Kind == agentwire.KindDocker:
		ret.Return, ret.Success = r.Message, r.Success
		if !r.Success {
			ret.Retcode = 1
		}
	default:
		ret.Return, ret.Retcode, ret.Success = r.Output, r.ExitCode, r.ExitCode == 0
	}
	s.emit("jobs", "ret", req.ID, req.Principal, ret)
}
