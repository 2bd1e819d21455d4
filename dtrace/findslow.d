#!/usr/sbin/dtrace -s
/*
 * findslow.d: every findObjects slower than a threshold.
 *
 *   dtrace -s findslow.d 100          (finds taking 100 ms or more)
 *
 *   MS       BUCKET                   RECORDS  FILTER
 *   143      manta                    1000     (&(dirname=/x/stor)(owner=*))
 *
 * Requests are matched by msgid (arg0) within a process, as in the
 * reference script: findobjects-done carries no req_id.  msgids are per
 * connection, so two concurrent finds with the same msgid on different
 * connections can be mismatched (rare: msgids grow per connection).
 *
 * Linux twin: dtrace/linux/findslow.bt.
 */

#pragma D option quiet
#pragma D option switchrate=10hz

BEGIN
{
	printf("%-8s %-24s %-8s %s\n", "MS", "BUCKET", "RECORDS", "FILTER");
}

moray*:::findobjects-start
{
	fstart[pid, arg0] = timestamp;
	fbucket[pid, arg0] = copyinstr(arg2);
	ffilter[pid, arg0] = copyinstr(arg3);
}

moray*:::findobjects-done
/fstart[pid, arg0] != 0 &&
    (timestamp - fstart[pid, arg0]) / 1000000 >= $1/
{
	printf("%-8d %-24s %-8d %s\n", (timestamp - fstart[pid, arg0]) / 1000000,
	    fbucket[pid, arg0], arg1, ffilter[pid, arg0]);
}

moray*:::findobjects-done
{
	fstart[pid, arg0] = 0;
	fbucket[pid, arg0] = 0;
	ffilter[pid, arg0] = 0;
}
