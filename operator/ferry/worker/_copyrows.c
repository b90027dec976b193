/*
 * The COPY read loop of ferry.worker.source, in C.
 *
 * COPY ... TO STDOUT sends one CopyData message per row. Called from Python once per
 * row, PQgetCopyData costs the worker about 0.8 CPU-us per row in the interpreter (a
 * call, a bytes object, a tuple, an append) on top of libpq's own work; on the
 * benchmark's 5M rows that is about 40 % of the worker's CPU for a plain CSV export, on
 * a machine where the worker shares its cores with the database backend. Here the rows
 * are appended to the chunk in C, and Python runs once per chunk instead of once per row.
 *
 * The wait for the server is here too. The backend sends about 8 KB at a time, so the
 * loop wakes about 25,000 times per million rows; through Python (select,
 * consume_input, the loop's bookkeeping) those wake-ups cost about 0.5 user CPU-s per
 * 5M rows, a third of the reader's user CPU. The wait releases the GIL, so the upload
 * threads run meanwhile, and pending signals are handled at every wake-up (a SIGTERM
 * handler's exception propagates from read_rows).
 *
 * The module does not link libpq: the PGconn belongs to the libpq that psycopg loaded
 * (psycopg-binary bundles its own), so source.py passes that library's function
 * addresses to bind() and each call the connection's address.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>

typedef int (*get_copy_data_fn)(void *conn, char **buffer, int async);
typedef void (*freemem_fn)(void *ptr);
typedef int (*consume_input_fn)(void *conn);

static get_copy_data_fn get_copy_data = NULL;
static freemem_fn freemem = NULL;
static consume_input_fn consume_input = NULL;

/* Statuses of read_rows, named in _copyrows.pyi. */
enum { WOULD_BLOCK = 0, FULL = 1, DONE = -1, FAILED = -2 };

static PyObject *
bind(PyObject *self, PyObject *args)
{
    unsigned long long get_copy_data_addr, freemem_addr, consume_input_addr;
    if (!PyArg_ParseTuple(args, "KKK:bind", &get_copy_data_addr, &freemem_addr,
                          &consume_input_addr))
        return NULL;
    if (!get_copy_data_addr || !freemem_addr || !consume_input_addr) {
        PyErr_SetString(PyExc_ValueError, "bind: a libpq function address is NULL");
        return NULL;
    }
    get_copy_data = (get_copy_data_fn)(uintptr_t)get_copy_data_addr;
    freemem = (freemem_fn)(uintptr_t)freemem_addr;
    consume_input = (consume_input_fn)(uintptr_t)consume_input_addr;
    Py_RETURN_NONE;
}

static double
monotonic_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Wait until the socket is readable or `seconds` have passed, without the GIL.
 * 1: read again (readable, a socket error for libpq to report, or a signal handled),
 * 0: time is up, -1: an exception is set (a signal handler raised, or poll failed). */
static int
wait_readable(int sock, double seconds)
{
    struct pollfd fd = {.fd = sock, .events = POLLIN};
    int ready, error;
    Py_BEGIN_ALLOW_THREADS
    ready = poll(&fd, 1, (int)(seconds * 1000.0) + 1);
    error = errno;
    Py_END_ALLOW_THREADS
    if (PyErr_CheckSignals() < 0)
        return -1;
    if (ready < 0 && error != EINTR) {
        errno = error;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return ready != 0;
}

static PyObject *
read_rows(PyObject *self, PyObject *args)
{
    unsigned long long conn_addr;
    PyObject *chunk;
    Py_ssize_t limit;
    int sock;
    double wait_s;
    if (!PyArg_ParseTuple(args, "KO!nid:read_rows", &conn_addr, &PyByteArray_Type, &chunk,
                          &limit, &sock, &wait_s))
        return NULL;
    if (get_copy_data == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "read_rows: bind() the libpq functions first");
        return NULL;
    }
    if (!conn_addr) {
        PyErr_SetString(PyExc_ValueError, "read_rows: the connection is closed");
        return NULL;
    }
    void *conn = (void *)(uintptr_t)conn_addr;
    double deadline = monotonic_s() + wait_s;
    long records = 0;
    int status;
    for (;;) {
        char *row = NULL;
        int size = get_copy_data(conn, &row, 1);
        if (size == 0) {
            double left = deadline - monotonic_s();
            int ready = left > 0 ? wait_readable(sock, left) : 0;
            if (ready < 0)
                return NULL;
            if (ready == 0) {
                status = WOULD_BLOCK;
                break;
            }
            if (!consume_input(conn)) {
                status = FAILED;
                break;
            }
            continue;
        }
        if (size < 0) {
            status = size == -1 ? DONE : FAILED;
            break;
        }
        Py_ssize_t used = PyByteArray_GET_SIZE(chunk);
        if (PyByteArray_Resize(chunk, used + size) < 0) {
            freemem(row);
            return NULL;
        }
        memcpy(PyByteArray_AS_STRING(chunk) + used, row, (size_t)size);
        freemem(row);
        records++;
        if (used + size >= limit) {
            status = FULL;
            break;
        }
    }
    return Py_BuildValue("(li)", records, status);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(get_copy_data, freemem, consume_input): the addresses of PQgetCopyData, "
     "PQfreemem and PQconsumeInput."},
    {"read_rows", read_rows, METH_VARARGS,
     "read_rows(conn, chunk, limit, sock, wait_s) -> (records, status): append COPY rows "
     "until the chunk holds limit bytes, the COPY ends, or wait_s have passed."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ferry.worker._copyrows", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__copyrows(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "WOULD_BLOCK", WOULD_BLOCK) < 0
        || PyModule_AddIntConstant(m, "FULL", FULL) < 0
        || PyModule_AddIntConstant(m, "DONE", DONE) < 0
        || PyModule_AddIntConstant(m, "FAILED", FAILED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
