// A signal handler may only touch a volatile sig_atomic_t and call async-signal-safe functions
// (write, _exit: POSIX.1-2017 §2.4.3), which is why this lives in C rather than in Swift, whose
// globals are initialised lazily behind a lock.
#include "CStopSignal.h"
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t requested = 0;

static void say(const char *text) {
    ssize_t ignored = write(2, text, strlen(text));
    (void)ignored;
}

/// Set on a rank that serves placed roles: it cannot stop the run itself (rank 0 drives).
static volatile sig_atomic_t serving = 0;

/// "rank r (role, step s): ", the handler's prefix, so that a stop (mpirun's SIGTERM to every rank
/// when one died, too) says where each rank was. Two buffers: the writer fills the one not in use
/// and then flips `current`, so the handler reads a whole prefix, old or new.
static char prefixes[2][160];
static volatile sig_atomic_t current = 0;

void rlhf_set_report_prefix(const char *prefix) {
    int next = 1 - current;
    strncpy(prefixes[next], prefix, sizeof prefixes[next] - 1);
    prefixes[next][sizeof prefixes[next] - 1] = 0;
    current = next;
}

static void on_stop_signal(int signal) {
    if (requested != 0) {
        say("\nsecond signal: exiting at once, without a checkpoint\n");
        _exit(128 + signal);
    }
    requested = signal;
    say("\n");
    say(prefixes[current]);
    if (serving) {
        say("signal received by a rank serving roles: rank 0 decides when the run stops (signal it, or mpirun); send it again to exit at once\n");
    } else {
        say("signal received: finishing the current step, then writing a checkpoint (send it again to exit at once)\n");
    }
}

int rlhf_install_stop_handlers(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;   // blocking reads and MPI's sockets carry on; the loop polls
    int signals[] = {SIGINT, SIGTERM, SIGUSR1};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
    }
    return 0;
}

void rlhf_mark_serving_rank(void) { serving = 1; }

int rlhf_stop_signal(void) { return requested; }

void rlhf_set_stop_signal(int signal) { requested = signal; }

/// Only the handler writes it; readers see an old or a new count, either is fine.
static volatile sig_atomic_t continued = 0;

static void on_continue(int signal) {
    (void)signal;
    continued = continued + 1;
}

int rlhf_install_continue_counter(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_continue;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    return sigaction(SIGCONT, &action, NULL);
}

int rlhf_continued_count(void) { return continued; }

