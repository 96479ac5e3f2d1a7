// The native half of the Node.js binding: a thin layer over libshmlease.
//
// Everything here runs on the JavaScript thread except two things:
//  - waiting acquires run in the library's own thread (shmlease_acquire_async)
//    and tell us they are done through a descriptor that libuv polls;
//  - on a table with a remote backend (every call a network round trip), calls
//    run on libuv's thread pool (Napi::AsyncWorker) so that none blocks the
//    event loop. Local calls are a few atomics: they run inline.
// Lease values (struct shmlease_lease, 64 bytes) cross between JavaScript
// and the library through one scratch buffer per environment: an acquire
// leaves its lease there, JavaScript copies it into the lease object at
// once (synchronously, in the same callback), and copies it back there before
// a renew or release. Nothing is allocated per call: a call costs about as
// much as the library's.
// Results are negative errnos, mapped to Error objects by lib/errors.js.
#include <napi.h>
#include <uv.h>

#include <shmlease.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

static_assert(sizeof(shmlease_lease) == 64, "lease value size");

namespace {

// ---------------------------------------------------------------- test clock

// A clock that JavaScript moves: the library reads it from any of its threads
// (waiting acquires, keepalives), so the value lives in native memory, read
// with an atomic load, never through a call into JavaScript.
struct ClockCell {
    std::atomic<uint64_t> now;
    explicit ClockCell(uint64_t start) : now(start) {}
};

uint64_t read_clock_cell(void *ctx)
{
    return static_cast<ClockCell *>(ctx)->now.load(std::memory_order_acquire);
}

class TestClock : public Napi::ObjectWrap<TestClock> {
public:
    static Napi::Function Init(Napi::Env env)
    {
        return DefineClass(env, "TestClock",
                           {InstanceMethod("now", &TestClock::Now),
                            InstanceMethod("advance", &TestClock::Advance),
                            InstanceMethod("set", &TestClock::Set)});
    }
    explicit TestClock(const Napi::CallbackInfo &info) : Napi::ObjectWrap<TestClock>(info)
    {
        uint64_t start = info.Length() > 0 ? (uint64_t)info[0].As<Napi::Number>().Int64Value() : 0;
        cell = std::make_shared<ClockCell>(start);
    }
    std::shared_ptr<ClockCell> cell;

private:
    Napi::Value Now(const Napi::CallbackInfo &info)
    {
        return Napi::Number::New(info.Env(), (double)cell->now.load());
    }
    Napi::Value Advance(const Napi::CallbackInfo &info)
    {
        uint64_t ms = (uint64_t)info[0].As<Napi::Number>().Int64Value();
        return Napi::Number::New(info.Env(), (double)(cell->now.fetch_add(ms) + ms));
    }
    Napi::Value Set(const Napi::CallbackInfo &info)
    {
        uint64_t ms = (uint64_t)info[0].As<Napi::Number>().Int64Value();
        cell->now.store(ms);
        return info.Env().Undefined();
    }
};

// ---------------------------------------------------------------- helpers

Napi::Object info_object(Napi::Env env, const shmlease_info &i)
{
    Napi::Object o = Napi::Object::New(env);
    o.Set("key", Napi::String::New(env, i.key));
    o.Set("fencingToken", Napi::BigInt::New(env, (uint64_t)i.fencing_token));
    o.Set("holderPid", Napi::Number::New(env, i.holder_pid));
    o.Set("holderAlive", i.holder_alive < 0 ? env.Null() : Napi::Boolean::New(env, i.holder_alive == 1));
    o.Set("remainingMs", Napi::Number::New(env, (double)i.remaining_ms));
    o.Set("expiresAt", Napi::Number::New(env, (double)i.expires_at_ms));
    o.Set("waiters", Napi::Number::New(env, i.waiters));
    o.Set("inGrace", Napi::Boolean::New(env, i.in_grace != 0));
    o.Set("mode", Napi::String::New(env, i.mode == SHMLEASE_SHARED ? "shared" : "exclusive"));
    o.Set("limit", Napi::Number::New(env, i.limit));
    o.Set("holders", Napi::Number::New(env, i.holders));
    o.Set("queued", Napi::Number::New(env, i.queued));
    size_t n = i.metadata_len <= SHMLEASE_METADATA_MAX ? i.metadata_len : SHMLEASE_METADATA_MAX;
    o.Set("metadata", Napi::Buffer<uint8_t>::Copy(env, i.metadata, n));
    return o;
}

// Options of an acquire as JavaScript passes them (already checked there):
// key, ttl, wait, metadata (Buffer or undefined), mode, limit, flags.
struct AcquireArgs {
    std::string key;
    std::vector<uint8_t> metadata;
    shmlease_acquire_opts o;
    AcquireArgs(const Napi::CallbackInfo &info, size_t first)
    {
        std::memset(&o, 0, sizeof o);
        key = info[first].As<Napi::String>().Utf8Value();
        o.ttl_ms = (uint64_t)info[first + 1].As<Napi::Number>().Int64Value();
        o.wait_ms = info[first + 2].As<Napi::Number>().Int64Value();
        if (info[first + 3].IsBuffer()) {
            Napi::Buffer<uint8_t> b = info[first + 3].As<Napi::Buffer<uint8_t>>();
            metadata.assign(b.Data(), b.Data() + b.Length());
        }
        o.mode = info[first + 4].As<Napi::Number>().Uint32Value();
        o.limit = info[first + 5].As<Napi::Number>().Uint32Value();
        o.flags = info[first + 6].As<Napi::Number>().Uint32Value();
    }
    const shmlease_acquire_opts *opts()
    {
        o.metadata = metadata.empty() ? nullptr : metadata.data();
        o.metadata_len = metadata.size();
        return &o;
    }
};

void fatal_if_pending(Napi::Env env)
{
    if (env.IsExceptionPending())
        napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

// Calls cb(args) from a libuv callback (no JavaScript frame below us).
void call_from_loop(Napi::Env env, Napi::FunctionReference &cb,
                    const std::initializer_list<napi_value> &args)
{
    Napi::HandleScope scope(env);
    try {
        cb.MakeCallback(env.Global(), args);
    } catch (const Napi::Error &e) {
        napi_fatal_exception(env, e.Value());
    }
    fatal_if_pending(env);
}

class Table;

// Constructors of the objects the addon makes itself, one set per
// environment (the main thread and each worker thread load their own).
struct AddonData {
    Napi::FunctionReference request;
    Napi::FunctionReference keepalive;
    Napi::Reference<Napi::ArrayBuffer> scratch;   // exported as `scratch`
    shmlease_lease *lease = nullptr;              // its contents
};

shmlease_lease *scratch_lease(Napi::Env env)
{
    return env.GetInstanceData<AddonData>()->lease;
}

// ---------------------------------------------------------------- waiting acquire

// One acquire that waits, in the library's thread; its descriptor is polled
// by libuv, and the callback gets (rc, leaseValue).
struct Pending {
    Table *table;
    shmlease_async *req = nullptr;
    uv_poll_t poll;
    Napi::Env env;
    Napi::FunctionReference cb;
    Napi::ObjectReference self;   // the request object JavaScript holds
    bool finished = false;
    Pending(Table *t, Napi::Env e) : table(t), env(e) {}
};

class Request : public Napi::ObjectWrap<Request> {
public:
    static Napi::Function Init(Napi::Env env)
    {
        return DefineClass(env, "Request", {InstanceMethod("cancel", &Request::Cancel)});
    }
    explicit Request(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Request>(info) {}
    Pending *p = nullptr;   // null once finished
private:
    Napi::Value Cancel(const Napi::CallbackInfo &info)
    {
        int rc = p && p->req ? shmlease_async_cancel(p->req) : -EALREADY;
        return Napi::Number::New(info.Env(), rc);
    }
};

// ---------------------------------------------------------------- keepalive

class KeepAlive;
struct KeepAliveState {
    Table *table;
    KeepAlive *owner = nullptr;   // the JavaScript object, while it lives
    shmlease_keepalive *k = nullptr;
    uv_poll_t poll;
    bool polling = false;
    Napi::Env env;
    Napi::FunctionReference on_lost;
    KeepAliveState(Table *t, Napi::Env e) : table(t), env(e) {}
};

class KeepAlive : public Napi::ObjectWrap<KeepAlive> {
public:
    static Napi::Function Init(Napi::Env env)
    {
        return DefineClass(env, "KeepAlive",
                           {InstanceMethod("stop", &KeepAlive::Stop),
                            InstanceMethod("status", &KeepAlive::Status),
                            InstanceMethod("renewals", &KeepAlive::Renewals)});
    }
    explicit KeepAlive(const Napi::CallbackInfo &info) : Napi::ObjectWrap<KeepAlive>(info) {}
    ~KeepAlive() override;
    KeepAliveState *s = nullptr;
    Napi::ObjectReference table_ref;

private:
    Napi::Value Stop(const Napi::CallbackInfo &info);
    Napi::Value Status(const Napi::CallbackInfo &info);
    Napi::Value Renewals(const Napi::CallbackInfo &info);
};

// Stops watching the descriptor at once (before its owner closes it: its
// number may be reused by the next descriptor); done frees later.
void close_poll(uv_poll_t *p, void (*done)(uv_handle_t *))
{
    uv_close(reinterpret_cast<uv_handle_t *>(p), done);
}

// ---------------------------------------------------------------- table

class Table : public Napi::ObjectWrap<Table> {
public:
    static Napi::Function Init(Napi::Env env)
    {
        return DefineClass(
            env, "Table",
            {InstanceMethod("tryAcquire", &Table::TryAcquire),
             InstanceMethod("acquireAsync", &Table::AcquireAsync),
             InstanceMethod("renew", &Table::Renew),
             InstanceMethod("release", &Table::Release),
             InstanceMethod("releaseAfter", &Table::ReleaseAfter),
             InstanceMethod("check", &Table::Check),
             InstanceMethod("breakKey", &Table::Break),
             InstanceMethod("inspect", &Table::Inspect),
             InstanceMethod("list", &Table::List),
             InstanceMethod("stats", &Table::Stats),
             InstanceMethod("now", &Table::Now),
             InstanceMethod("keepAlive", &Table::StartKeepAlive),
             InstanceMethod("offloaded", &Table::Offloaded),
             InstanceMethod("close", &Table::Close)});
    }

    // new Table(name, backend|undefined, clock|undefined, capacity, mode, offload)
    explicit Table(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Table>(info), env_(info.Env())
    {
        Napi::Env env = info.Env();
        std::string name = info[0].As<Napi::String>().Utf8Value();
        shmlease_options o;
        std::memset(&o, 0, sizeof o);
        if (info[1].IsString()) {
            backend_ = info[1].As<Napi::String>().Utf8Value();
            o.backend = backend_.c_str();
        }
        if (info[2].IsObject()) {
            TestClock *c = TestClock::Unwrap(info[2].As<Napi::Object>());
            clock_ = c->cell;
            o.clock_ms = read_clock_cell;
            o.clock_ctx = clock_.get();
        }
        o.capacity = info[3].As<Napi::Number>().Uint32Value();
        o.mode = info[4].As<Napi::Number>().Uint32Value();
        offload_ = info[1].IsString() || info[5].ToBoolean().Value();
        int rc = shmlease_open(name.c_str(), &o, &t_);
        if (rc) {
            Napi::Error e = Napi::Error::New(env, std::string("shmlease: open table '") + name +
                                                      "': " + shmlease_strerror(rc));
            e.Set("code", Napi::String::New(env, shmlease_errname(rc)));
            e.Set("errno", Napi::Number::New(env, rc));
            throw e;
        }
        napi_add_env_cleanup_hook(env, &Table::CleanupHook, this);
        hook_ = true;
    }

    ~Table() override
    {
        if (hook_)
            napi_remove_env_cleanup_hook(env_, &Table::CleanupHook, this);
        hook_ = false;
        Shutdown(false);
    }

    shmlease_table *t_ = nullptr;
    std::set<Pending *> pending_;
    std::set<KeepAliveState *> keepalives_;
    int inflight_ = 0;       // offloaded calls running on the thread pool
    bool closing_ = false;   // closed or closing (once the offloaded calls end)

    void CloseIfIdle()
    {
        if (closing_ && inflight_ == 0 && t_) {
            shmlease_close(t_);
            t_ = nullptr;
        }
    }

    // Ends the waiting acquires (their callbacks get -ECANCELED when
    // with_callbacks), stops the keepalives, closes the table.
    void Shutdown(bool with_callbacks)
    {
        closing_ = true;   // from now on calls are EBADF (the callbacks below included)
        std::set<Pending *> ps;
        ps.swap(pending_);
        for (Pending *p : ps) {
            // libuv stops watching the descriptor before the library closes
            // it (the number may be reused at once); p is freed later.
            close_poll(&p->poll, [](uv_handle_t *h) { delete static_cast<Pending *>(h->data); });
            shmlease_async_free(p->req);   // cancels, joins, releases an unfetched lease
            p->req = nullptr;
            p->finished = true;
            if (with_callbacks) {
                Napi::HandleScope scope(p->env);
                Request::Unwrap(p->self.Value())->p = nullptr;
                p->cb.Call({Napi::Number::New(p->env, -ECANCELED)});
            }
            p->self.Reset();
            p->cb.Reset();
            Unref();
        }
        std::set<KeepAliveState *> ks;
        ks.swap(keepalives_);
        for (KeepAliveState *k : ks)
            StopKeepAliveState(k);
        if (t_ && inflight_ == 0) {   // else the last offloaded call closes it
            shmlease_close(t_);
            t_ = nullptr;
        }
    }

    // Stops the keepalive and its polling; the state is freed once libuv
    // has closed the handle. Returns keepalive_stop's answer.
    static int StopKeepAliveState(KeepAliveState *s);
private:
    Napi::Env env_;
    std::string backend_;
    std::shared_ptr<ClockCell> clock_;
    bool offload_ = false;
    bool hook_ = false;

    static void CleanupHook(void *arg)
    {
        Table *self = static_cast<Table *>(arg);
        self->hook_ = false;
        // With offloaded calls still running on the thread pool, the handle
        // is left open (closing it under them is unsafe; they will not
        // finish in this environment): the process's exit releases it.
        self->Shutdown(false);
    }

    shmlease_table *Open(Napi::Env env)
    {
        if (!t_ || closing_) {
            Napi::Error e = Napi::Error::New(env, "shmlease: the table is closed");
            e.Set("code", Napi::String::New(env, "EBADF"));
            e.Set("errno", Napi::Number::New(env, -EBADF));
            throw e;
        }
        return t_;
    }

    // Runs op on the thread pool, then cb(rc, extra) on the JavaScript thread;
    // done (on the JavaScript thread) turns what op left into the extra value.
    class Offload : public Napi::AsyncWorker {
    public:
        Offload(Table *t, Napi::Function cb, std::function<int()> op,
                std::function<Napi::Value(Napi::Env, int)> done)
            : Napi::AsyncWorker(cb), t_(t), op_(std::move(op)), done_(std::move(done))
        {
            t_->inflight_++;
            t_->Ref();
        }
        void Execute() override { rc_ = op_(); }
        void OnOK() override
        {
            Napi::Env env = Env();
            Napi::HandleScope scope(env);
            Napi::Value extra = done_ ? done_(env, rc_) : env.Undefined();
            Finish();
            Callback().Call({Napi::Number::New(env, rc_), extra});
        }

    private:
        void Finish()
        {
            t_->inflight_--;
            t_->CloseIfIdle();
            t_->Unref();
        }
        Table *t_;
        std::function<int()> op_;
        std::function<Napi::Value(Napi::Env, int)> done_;
        int rc_ = 0;
    };

    // A call on the lease value in the scratch buffer: inline for a local
    // table (returns rc), or offloaded when the argument at cb_index is a
    // callback (returns undefined; the value is copied now, and copied back
    // to the scratch buffer just before cb(rc) runs).
    Napi::Value LeaseCall(const Napi::CallbackInfo &info, size_t cb_index,
                          std::function<int(shmlease_table *, shmlease_lease *)> op)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        shmlease_lease *scratch = scratch_lease(env);
        if (!offload_ || !info[cb_index].IsFunction())
            return Napi::Number::New(env, op(t, scratch));
        auto copy = std::make_shared<shmlease_lease>(*scratch);
        (new Offload(this, info[cb_index].As<Napi::Function>(),
                     [t, copy, op]() { return op(t, copy.get()); },
                     [copy](Napi::Env e, int) {
                         *scratch_lease(e) = *copy;
                         return e.Undefined();
                     }))
            ->Queue();
        return env.Undefined();
    }

    Napi::Value Offloaded(const Napi::CallbackInfo &info)
    {
        return Napi::Boolean::New(info.Env(), offload_);
    }

    // tryAcquire(key, ttl, 0, meta, mode, limit, flags[, cb]) -> rc; the
    // lease in the scratch buffer
    Napi::Value TryAcquire(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        if (offload_ && info[7].IsFunction()) {
            auto a = std::make_shared<AcquireArgs>(info, 0);
            auto out = std::make_shared<shmlease_lease>();
            (new Offload(this, info[7].As<Napi::Function>(),
                         [t, a, out]() { return shmlease_acquire(t, a->key.c_str(), a->opts(), out.get()); },
                         [out](Napi::Env e, int rc) -> Napi::Value {
                             if (rc == 0)
                                 *scratch_lease(e) = *out;
                             return e.Undefined();
                         }))
                ->Queue();
            return env.Undefined();
        }
        AcquireArgs a(info, 0);
        return Napi::Number::New(env, shmlease_acquire(t, a.key.c_str(), a.opts(), scratch_lease(env)));
    }

    // acquireAsync(key, ttl, wait, meta, mode, limit, flags, cb) -> Request
    // cb(rc) once, from the event loop, the lease in the scratch buffer.
    Napi::Value AcquireAsync(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        AcquireArgs a(info, 0);
        Napi::Function cb = info[7].As<Napi::Function>();
        shmlease_async *req = nullptr;
        int rc = shmlease_acquire_async(t, a.key.c_str(), a.opts(), &req);
        if (rc)
            return Napi::Number::New(env, rc);
        int fd = shmlease_async_fd(req);
        uv_loop_t *loop = nullptr;
        napi_get_uv_event_loop(env, &loop);
        Pending *p = new Pending(this, env);
        p->req = req;
        p->poll.data = p;
        if (fd < 0 || uv_poll_init(loop, &p->poll, fd) != 0) {
            shmlease_async_free(req);
            delete p;
            return Napi::Number::New(env, fd < 0 ? fd : -EIO);
        }
        p->cb = Napi::Persistent(cb);
        Napi::Object robj = env.GetInstanceData<AddonData>()->request.New({});
        Request::Unwrap(robj)->p = p;
        p->self = Napi::Persistent(robj);
        pending_.insert(p);
        Ref();   // the table stays while a request waits
        uv_poll_start(&p->poll, UV_READABLE, &Table::OnAcquireReady);
        return robj;
    }

    static void OnAcquireReady(uv_poll_t *h, int status, int events)
    {
        (void)events;
        Pending *p = static_cast<Pending *>(h->data);
        shmlease_lease l;
        int rc = status < 0 ? -EIO : shmlease_async_result(p->req, &l);
        if (rc == -EINPROGRESS)
            return;                       // not done yet: keep polling
        Table *self = p->table;
        Napi::Env env = p->env;
        self->pending_.erase(p);
        // Stop watching before the descriptor closes; p is freed later.
        close_poll(&p->poll, [](uv_handle_t *hh) { delete static_cast<Pending *>(hh->data); });
        shmlease_async_free(p->req);      // a fetched lease stays ours
        p->req = nullptr;
        p->finished = true;
        Napi::HandleScope scope(env);
        Request::Unwrap(p->self.Value())->p = nullptr;
        p->self.Reset();
        if (rc == 0)
            *scratch_lease(env) = l;
        call_from_loop(env, p->cb, {Napi::Number::New(env, rc)});
        p->cb.Reset();
        self->Unref();
    }

    Napi::Value Renew(const Napi::CallbackInfo &info)
    {
        uint64_t ttl = (uint64_t)info[0].As<Napi::Number>().Int64Value();
        return LeaseCall(info, 1, [ttl](shmlease_table *t, shmlease_lease *l) {
            return shmlease_renew(t, l, ttl);
        });
    }
    Napi::Value Release(const Napi::CallbackInfo &info)
    {
        return LeaseCall(info, 0, [](shmlease_table *t, shmlease_lease *l) {
            return shmlease_release(t, l);
        });
    }
    Napi::Value ReleaseAfter(const Napi::CallbackInfo &info)
    {
        uint64_t grace = (uint64_t)info[0].As<Napi::Number>().Int64Value();
        return LeaseCall(info, 1, [grace](shmlease_table *t, shmlease_lease *l) {
            return shmlease_release_after(t, l, grace);
        });
    }
    Napi::Value Check(const Napi::CallbackInfo &info)
    {
        return LeaseCall(info, 0, [](shmlease_table *t, shmlease_lease *l) {
            return shmlease_check(t, l);
        });
    }

    // breakKey(key[, cb]) -> rc
    Napi::Value Break(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        auto key = std::make_shared<std::string>(info[0].As<Napi::String>().Utf8Value());
        if (offload_ && info[1].IsFunction()) {
            (new Offload(this, info[1].As<Napi::Function>(),
                         [t, key]() { return shmlease_break(t, key->c_str()); }, nullptr))
                ->Queue();
            return env.Undefined();
        }
        return Napi::Number::New(env, shmlease_break(t, key->c_str()));
    }

    // inspect(key[, cb]) -> info | rc (a number: -ENOENT when free)
    Napi::Value Inspect(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        auto key = std::make_shared<std::string>(info[0].As<Napi::String>().Utf8Value());
        auto out = std::make_shared<shmlease_info>();
        if (offload_ && info[1].IsFunction()) {
            (new Offload(this, info[1].As<Napi::Function>(),
                         [t, key, out]() { return shmlease_inspect(t, key->c_str(), out.get()); },
                         [out](Napi::Env e, int rc) -> Napi::Value {
                             return rc == 0 ? Napi::Value(info_object(e, *out)) : e.Undefined();
                         }))
                ->Queue();
            return env.Undefined();
        }
        int rc = shmlease_inspect(t, key->c_str(), out.get());
        if (rc)
            return Napi::Number::New(env, rc);
        return info_object(env, *out);
    }

    static int Collect(const shmlease_info *i, void *arg)
    {
        static_cast<std::vector<shmlease_info> *>(arg)->push_back(*i);
        return 0;
    }

    // list([cb]) -> [info...] | rc
    Napi::Value List(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        auto all = std::make_shared<std::vector<shmlease_info>>();
        auto to_array = [all](Napi::Env e, int rc) -> Napi::Value {
            if (rc)
                return e.Undefined();
            Napi::Array a = Napi::Array::New(e, all->size());
            for (size_t i = 0; i < all->size(); i++)
                a.Set((uint32_t)i, info_object(e, (*all)[i]));
            return a;
        };
        if (offload_ && info[0].IsFunction()) {
            (new Offload(this, info[0].As<Napi::Function>(),
                         [t, all]() { return shmlease_foreach(t, &Table::Collect, all.get()); },
                         to_array))
                ->Queue();
            return env.Undefined();
        }
        int rc = shmlease_foreach(t, &Table::Collect, all.get());
        if (rc)
            return Napi::Number::New(env, rc);
        return to_array(env, 0);
    }

    Napi::Value Stats(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_stats s;
        int rc = shmlease_stats_get(Open(env), &s);
        if (rc)
            return Napi::Number::New(env, rc);
        Napi::Object o = Napi::Object::New(env);
        auto n = [&](const char *k, uint64_t v) { o.Set(k, Napi::Number::New(env, (double)v)); };
        n("acquisitions", s.acquisitions);
        n("contended", s.contended);
        n("waits", s.waits);
        n("timeouts", s.timeouts);
        n("busy", s.busy);
        n("expirations", s.expirations);
        n("reclaimedDead", s.reclaimed_dead);
        n("renewals", s.renewals);
        n("lost", s.lost);
        n("broken", s.broken);
        n("capacity", s.capacity);
        n("liveKeys", s.live_keys);
        n("held", s.held);
        n("attached", s.attached);
        o.Set("fencingCounter", Napi::BigInt::New(env, (uint64_t)s.fencing_counter));
        return o;
    }

    Napi::Value Now(const Napi::CallbackInfo &info)
    {
        return Napi::Number::New(info.Env(), (double)shmlease_now_ms(Open(info.Env())));
    }

    // keepAlive(ttl, interval, onLost(why)) -> KeepAlive | rc, for the lease
    // in the scratch buffer
    Napi::Value StartKeepAlive(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        shmlease_table *t = Open(env);
        shmlease_lease *l = scratch_lease(env);
        shmlease_keepalive_opts o;
        std::memset(&o, 0, sizeof o);
        o.ttl_ms = (uint64_t)info[0].As<Napi::Number>().Int64Value();
        o.interval_ms = (uint64_t)info[1].As<Napi::Number>().Int64Value();
        shmlease_keepalive *k = nullptr;
        int rc = shmlease_keepalive_start(t, l, &o, &k);
        if (rc)
            return Napi::Number::New(env, rc);
        KeepAliveState *s = new KeepAliveState(this, env);
        s->k = k;
        s->poll.data = s;
        uv_loop_t *loop = nullptr;
        napi_get_uv_event_loop(env, &loop);
        if (uv_poll_init(loop, &s->poll, shmlease_keepalive_fd(k)) != 0) {
            shmlease_keepalive_stop(k);
            delete s;
            return Napi::Number::New(env, -EIO);
        }
        s->polling = true;
        if (info[2].IsFunction())
            s->on_lost = Napi::Persistent(info[2].As<Napi::Function>());
        uv_poll_start(&s->poll, UV_READABLE, &Table::OnKeepAliveLost);
        // A keepalive does not keep the process running by itself: the work
        // it protects does.
        uv_unref(reinterpret_cast<uv_handle_t *>(&s->poll));
        keepalives_.insert(s);
        Napi::Object kobj = env.GetInstanceData<AddonData>()->keepalive.New({});
        KeepAlive *ka = KeepAlive::Unwrap(kobj);
        ka->s = s;
        s->owner = ka;
        ka->table_ref = Napi::Persistent(Value());
        return kobj;
    }

    static void OnKeepAliveLost(uv_poll_t *h, int status, int events)
    {
        (void)status;
        (void)events;
        KeepAliveState *s = static_cast<KeepAliveState *>(h->data);
        int why = s->k ? shmlease_keepalive_status(s->k, nullptr) : -ECANCELED;
        if (why == 0)
            return;                      // spurious: still held
        uv_poll_stop(&s->poll);          // said once; the state stays until stop
        if (!s->on_lost.IsEmpty()) {
            Napi::Env env = s->env;
            Napi::HandleScope scope(env);
            call_from_loop(env, s->on_lost, {Napi::Number::New(env, why)});
        }
    }

    Napi::Value Close(const Napi::CallbackInfo &info)
    {
        Shutdown(true);
        return info.Env().Undefined();
    }
};

int Table::StopKeepAliveState(KeepAliveState *s)
{
    if (s->owner) {
        s->owner->s = nullptr;
        s->owner = nullptr;
    }
    s->table = nullptr;
    shmlease_keepalive *k = s->k;
    s->k = nullptr;
    // libuv stops watching the descriptor before stop closes it.
    if (s->polling) {
        s->polling = false;
        close_poll(&s->poll, [](uv_handle_t *h) { delete static_cast<KeepAliveState *>(h->data); });
    } else {
        delete s;
    }
    return shmlease_keepalive_stop(k);
}

KeepAlive::~KeepAlive()
{
    // Collected without stop: the table's close (or teardown) stops it.
    if (s)
        s->owner = nullptr;
}

Napi::Value KeepAlive::Stop(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (!s) {   // stopped already, or by the table's close
        table_ref.Reset();
        return Napi::Number::New(env, -ECANCELED);
    }
    KeepAliveState *st = s;
    st->table->keepalives_.erase(st);
    int rc = Table::StopKeepAliveState(st);   // clears s
    table_ref.Reset();
    return Napi::Number::New(env, rc);
}

Napi::Value KeepAlive::Status(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (!s || !s->k)
        return Napi::Number::New(env, -ECANCELED);
    shmlease_lease cur;
    int rc = shmlease_keepalive_status(s->k, &cur);
    Napi::Array r = Napi::Array::New(env, 2);
    r.Set(0u, Napi::Number::New(env, rc));
    r.Set(1u, rc == 0 ? Napi::Value(Napi::Number::New(env, (double)cur.expires_at_ms)) : env.Undefined());
    return r;
}

Napi::Value KeepAlive::Renewals(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (!s || !s->k)
        return Napi::Number::New(env, 0);
    shmlease_keepalive_stats st;
    if (shmlease_keepalive_stats_get(s->k, &st) != 0)
        return Napi::Number::New(env, 0);
    return Napi::Number::New(env, (double)st.renewals);
}

// ---------------------------------------------------------------- module

Napi::Value ErrName(const Napi::CallbackInfo &info)
{
    return Napi::String::New(info.Env(), shmlease_errname(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value StrError(const Napi::CallbackInfo &info)
{
    return Napi::String::New(info.Env(), shmlease_strerror(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value Unlink(const Napi::CallbackInfo &info)
{
    return Napi::Number::New(info.Env(), shmlease_unlink(info[0].As<Napi::String>().Utf8Value().c_str()));
}

Napi::Value Version(const Napi::CallbackInfo &info)
{
    return Napi::String::New(info.Env(), shmlease_version());
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports)
{
    exports.Set("Table", Table::Init(env));
    exports.Set("TestClock", TestClock::Init(env));
    AddonData *data = new AddonData();
    data->request = Napi::Persistent(Request::Init(env));
    data->keepalive = Napi::Persistent(KeepAlive::Init(env));
    Napi::ArrayBuffer scratch = Napi::ArrayBuffer::New(env, sizeof(shmlease_lease));
    data->scratch = Napi::Persistent(scratch);
    data->lease = static_cast<shmlease_lease *>(scratch.Data());
    env.SetInstanceData(data);
    exports.Set("scratch", scratch);
    exports.Set("errname", Napi::Function::New(env, ErrName));
    exports.Set("strerror", Napi::Function::New(env, StrError));
    exports.Set("unlink", Napi::Function::New(env, Unlink));
    exports.Set("version", Napi::Function::New(env, Version));
    Napi::Object c = Napi::Object::New(env);
    c.Set("EBUSY", Napi::Number::New(env, -EBUSY));
    c.Set("ETIMEDOUT", Napi::Number::New(env, -ETIMEDOUT));
    c.Set("ESTALE", Napi::Number::New(env, -ESTALE));
    c.Set("ENOENT", Napi::Number::New(env, -ENOENT));
    c.Set("ECANCELED", Napi::Number::New(env, -ECANCELED));
    c.Set("EINVAL", Napi::Number::New(env, -EINVAL));
    c.Set("EAGAIN", Napi::Number::New(env, -EAGAIN));
    c.Set("EALREADY", Napi::Number::New(env, -EALREADY));
    c.Set("ENAMETOOLONG", Napi::Number::New(env, -ENAMETOOLONG));
    c.Set("EEXIST", Napi::Number::New(env, -EEXIST));
    c.Set("EBADF", Napi::Number::New(env, -EBADF));
    c.Set("WAIT_FOREVER", Napi::Number::New(env, SHMLEASE_WAIT_FOREVER));
    c.Set("KEY_MAX", Napi::Number::New(env, SHMLEASE_KEY_MAX));
    c.Set("METADATA_MAX", Napi::Number::New(env, SHMLEASE_METADATA_MAX));
    c.Set("SHARED", Napi::Number::New(env, SHMLEASE_SHARED));
    c.Set("FAIR", Napi::Number::New(env, SHMLEASE_ACQUIRE_FAIR));
    exports.Set("constants", c);
    return exports;
}

}   // namespace

NODE_API_MODULE(shmlease, InitModule)
