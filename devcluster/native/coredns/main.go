// Command coredns is CoreDNS with only the plugins a Kubernetes cluster's DNS uses.
//
// CoreDNS's own main package imports every plugin it has, some of them with
// large cloud SDKs. This one imports the few that a cluster DNS configuration
// names (kubeadm's Corefile and the usual additions to it) and runs them in
// CoreDNS's own order, core/dnsserver/zdirectives.go of the release it is
// built with, restricted to them. devcluster/images.py builds it with the Go
// module proxy and checks that order against the release before it builds.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/autopath"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// Set before coremain.Run reads a Corefile: a directive outside this list is an
// error there, as one of a plugin CoreDNS does not have.
func init() {
	dnsserver.Directives = []string{
		"reload",
		"ready",
		"health",
		"prometheus",
		"errors",
		"log",
		"loadbalance",
		"rewrite",
		"autopath",
		"cache",
		"template",
		"hosts",
		"kubernetes",
		"loop",
		"forward",
		"whoami",
	}
}

func main() {
	coremain.Run()
}
