/*
 * Peer "robust-mutex": a pthread_mutex_t, PTHREAD_PROCESS_SHARED and
 * PTHREAD_MUTEX_ROBUST, in the shared mapping (initialised by peers_setup).
 * The floor for a real lock; a dead holder's waiter gets EOWNERDEAD.
 */
#include "bench.h"

#include <errno.h>

static int rm_attach(struct pinst *pi) { (void)pi; return 0; }
static void rm_detach(struct pinst *pi) { (void)pi; }

static int rm_result(struct pinst *pi, int r)
{
    if (r == EOWNERDEAD) {          /* the holder died: ours now, repair */
        pi->owner_dead++;
        pthread_mutex_consistent(&g_env.sh->rmutex);
        return 0;
    }
    if (r == EBUSY)
        return 1;
    return r ? -r : 0;
}
static int rm_try(struct pinst *pi)     { return rm_result(pi, pthread_mutex_trylock(&g_env.sh->rmutex)); }
static int rm_acquire(struct pinst *pi)
{
    int r = rm_result(pi, pthread_mutex_lock(&g_env.sh->rmutex));
    return r == 1 ? -EBUSY : r;
}
static int rm_release(struct pinst *pi)
{
    (void)pi;
    int r = pthread_mutex_unlock(&g_env.sh->rmutex);
    return r ? -r : 0;
}

const struct peer_ops peer_robust_mutex_ops = {
    "robust-mutex", rm_attach, rm_try, rm_acquire, rm_release, rm_detach
};
