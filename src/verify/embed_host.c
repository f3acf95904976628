/* isolint embed host: starts and stops CPython inside one process, the way an
 * embedding application does, and runs one probe cycle each time.
 *
 *   host finalize N PROGRAM   N x (Py_InitializeFromConfig, cycle, Py_FinalizeEx)
 *   host subinterp N PROGRAM  one main interpreter; N x (Py_NewInterpreter,
 *                             cycle, Py_EndInterpreter), as mod_wsgi does
 *
 * PROGRAM is the python whose installation (and venv) to use. The cycle code
 * is the probe's embed_cycle(); the probe's path, the module and the options
 * come in the environment (ISOLINT_PROBE, ISOLINT_TARGET, ISOLINT_OPTS). After
 * each cycle the host prints "##isolint-rss CYCLE KIB" (resident set size) on
 * stdout; stage markers go to stderr like the probe's.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void stage(const char *mode, int cycle, int total, const char *what) {
    fprintf(stderr, "##isolint-stage embed %s: cycle %d/%d %s\n", mode, cycle, total, what);
    fflush(stderr);
}

static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) {
        resident = -1;
    }
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int start_runtime(const char *program) {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.faulthandler = 1;
    /* No command line of our own to parse: the host's argv is not Python's. */
    config.parse_argv = 0;
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, program);
    if (!PyStatus_Exception(status)) {
        status = Py_InitializeFromConfig(&config);
    }
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        fprintf(stderr, "##isolint-embed-error initialize: %s\n",
                status.err_msg ? status.err_msg : "unknown error");
        return -1;
    }
    return 0;
}

/* Runs the probe's embed_cycle() in the current interpreter. An exception it
 * does not catch itself is printed by PyRun_SimpleString. */
static void run_cycle(const char *mode, int cycle, int total) {
    char code[512];
    snprintf(code, sizeof code,
             "import os as _iso_os\n"
             "_iso_ns = {'__name__': 'isolint_probe'}\n"
             "with open(_iso_os.environ['ISOLINT_PROBE'], encoding='utf-8') as _iso_f:\n"
             "    exec(compile(_iso_f.read(), _iso_os.environ['ISOLINT_PROBE'], 'exec'), _iso_ns)\n"
             "_iso_ns['embed_cycle'](%d, %d, '%s')\n",
             cycle, total, mode);
    if (PyRun_SimpleString(code) != 0) {
        printf("##isolint-embed-uncaught %d\n", cycle);
        fflush(stdout);
    }
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "finalize") != 0 && strcmp(argv[1], "subinterp") != 0)) {
        fprintf(stderr, "usage: %s finalize|subinterp CYCLES PROGRAM\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int total = atoi(argv[2]);
    const char *program = argv[3];
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(mode, "finalize") == 0) {
        for (int cycle = 1; cycle <= total; cycle++) {
            stage(mode, cycle, total, "initialize");
            if (start_runtime(program) != 0) {
                return 3;
            }
            run_cycle(mode, cycle, total);
            stage(mode, cycle, total, "finalize");
            if (Py_FinalizeEx() < 0) {
                printf("##isolint-embed-finalize-error %d\n", cycle);
            }
            printf("##isolint-rss %d %ld\n", cycle, rss_kib());
        }
        fprintf(stderr, "##isolint-stage exit\n");
        return 0;
    }

    stage(mode, 0, total, "initialize the main interpreter");
    if (start_runtime(program) != 0) {
        return 3;
    }
    PyThreadState *main_state = PyThreadState_Get();
    for (int cycle = 1; cycle <= total; cycle++) {
        stage(mode, cycle, total, "Py_NewInterpreter");
        PyThreadState *sub = Py_NewInterpreter();
        if (sub == NULL) {
            fprintf(stderr, "##isolint-embed-error Py_NewInterpreter failed in cycle %d\n", cycle);
            PyThreadState_Swap(main_state);
            return 3;
        }
        run_cycle(mode, cycle, total);
        stage(mode, cycle, total, "Py_EndInterpreter");
        Py_EndInterpreter(sub);
        PyThreadState_Swap(main_state);
        printf("##isolint-rss %d %ld\n", cycle, rss_kib());
    }
    stage(mode, total, total, "Py_FinalizeEx");
    if (Py_FinalizeEx() < 0) {
        printf("##isolint-embed-finalize-error %d\n", total);
    }
    fprintf(stderr, "##isolint-stage exit\n");
    return 0;
}
