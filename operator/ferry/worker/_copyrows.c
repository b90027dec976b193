/*
 * The COPY read loop of ferry.worker.source, in C.
 *
 * COPY ... TO STDOUT sends one CopyData message per row. Called from Python once per
 * row, PQgetCopyData costs the worker about 0.8 CPU-us per row in the interpreter (a
 * call, a bytes object, a tuple, an append) on top of libpq's own work; on the
 * benchmark's 5M rows that is about 40 % of the worker's CPU for a plain CSV export, on
 * a machine where the worker shares its cores with the database backend. Here the rows
 * that libpq already holds are appended to the chunk in one call, and Python runs once
 * per network read instead of once per row.
 *
 * The module does not link libpq: the PGconn belongs to the libpq that psycopg loaded
 * (psycopg-binary bundles its own), so source.py passes that library's function
 * addresses to bind() and each call the connection's address. The loop never waits:
 * when libpq has no complete row buffered it returns, and the caller waits on the
 * socket in Python, where signals are handled and the upload threads run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef int (*get_copy_data_fn)(void *conn, char **buffer, int async);
typedef void (*freemem_fn)(void *ptr);

static get_copy_data_fn get_copy_data = NULL;
static freemem_fn freemem = NULL;

/* Statuses of read_rows, named in _copyrows.pyi. */
enum { WOULD_BLOCK = 0, FULL = 1, DONE = -1, FAILED = -2 };

static PyObject *
bind(PyObject *self, PyObject *args)
{
    unsigned long long get_copy_data_addr, freemem_addr;
    if (!PyArg_ParseTuple(args, "KK:bind", &get_copy_data_addr, &freemem_addr))
        return NULL;
    if (!get_copy_data_addr || !freemem_addr) {
        PyErr_SetString(PyExc_ValueError, "bind: a libpq function address is NULL");
        return NULL;
    }
    get_copy_data = (get_copy_data_fn)(uintptr_t)get_copy_data_addr;
    freemem = (freemem_fn)(uintptr_t)freemem_addr;
    Py_RETURN_NONE;
}

static PyObject *
read_rows(PyObject *self, PyObject *args)
{
    unsigned long long conn_addr;
    PyObject *chunk;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "KO!n:read_rows", &conn_addr, &PyByteArray_Type, &chunk,
                          &limit))
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
    long records = 0;
    int status;
    for (;;) {
        char *row = NULL;
        int size = get_copy_data(conn, &row, 1);
        if (size <= 0) {
            status = size == 0 ? WOULD_BLOCK : size == -1 ? DONE : FAILED;
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
     "bind(get_copy_data, freemem): the addresses of PQgetCopyData and PQfreemem."},
    {"read_rows", read_rows, METH_VARARGS,
     "read_rows(conn, chunk, limit) -> (records, status): append buffered COPY rows."},
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
