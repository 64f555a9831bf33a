/*
 * The pod sandbox's process: it holds a pod's namespaces open and does nothing
 * else. Built by devcluster/images.py with `gcc -static -Os` into an image of
 * its own, localhost/callmap/pause:1, which containerd's CRI plugin starts first
 * in every pod.
 *
 * As process 1 of the pod's PID namespace it must handle its own signals (the
 * kernel drops a signal process 1 has no handler for), so SIGINT and SIGTERM end
 * it with status 0, and it reaps whatever orphans the namespace hands it.
 * `pause -v` prints its name and exits, to check that the binary runs.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signo)
{
	(void)signo;
	_exit(0);
}

static void reap(int signo)
{
	int saved = errno; /* waitpid may change it under the interrupted code */

	(void)signo;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int handle(int signo, void (*handler)(int), int flags)
{
	struct sigaction action;

	memset(&action, 0, sizeof(action));
	action.sa_handler = handler;
	action.sa_flags = flags;
	sigemptyset(&action.sa_mask);
	return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("callmap pause 1");
		return 0;
	}
	if (handle(SIGINT, stop, 0) != 0 || handle(SIGTERM, stop, 0) != 0 ||
	    handle(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART) != 0) {
		perror("pause: sigaction");
		return 1;
	}
	if (getpid() != 1)
		fputs("pause: not process 1 of a PID namespace; running anyway\n", stderr);
	for (;;)
		pause();
}
