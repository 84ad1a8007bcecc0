// Command turnout-controlplane is kube-apiserver, kube-controller-manager, kube-scheduler and etcd
// in one executable, built from Kubernetes' and etcd's own Go modules at the versions go.mod pins.
//
// It runs the program named by the name it was started under (a symlink called kube-apiserver,
// ...) or by its first argument (turnout-controlplane kube-apiserver --flags...). One executable
// links the code the four programs share once: four separate ones would each link all of it again,
// which costs build time and four times the disk. It adds no behaviour of its own: each program's
// main is the upstream one, line for line.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as upstream's kube-apiserver and kube-controller-manager

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

var programs = map[string]func() int{
	"kube-apiserver":          func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"etcd": func() int {
		etcdmain.Main(os.Args)
		return 0
	},
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := programs[name]; !ok && len(os.Args) > 1 {
		// Called by its own name: the program is the first argument, and each program reads
		// os.Args as if it had been started directly.
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	run, ok := programs[name]
	if !ok {
		names := make([]string, 0, len(programs))
		for n := range programs {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: turnout-controlplane PROGRAM [flags]\nPROGRAM is one of %v\n", names)
		os.Exit(2)
	}
	os.Exit(run())
}
