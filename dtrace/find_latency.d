#!/usr/sbin/dtrace -s
/*
 * find_latency.d: findObjects latency in milliseconds, a power-of-two
 * histogram per bucket, filter and number of records returned, printed
 * when dtrace exits (^C).
 *
 *   dtrace -s find_latency.d [-p PID]
 *
 *     mybucket (name=foo) 1 records (ms)
 *              value  ------------- Distribution ------------- count
 *
 * Matched by msgid (arg0) within a process, as findobjects-done carries no
 * req_id (see findslow.d for the caveat).
 *
 * Linux twin: dtrace/linux/find_latency.bt.
 */

#pragma D option quiet

moray*:::findobjects-start
{
	fstart[pid, arg0] = timestamp;
	fbucket[pid, arg0] = copyinstr(arg2);
	ffilter[pid, arg0] = copyinstr(arg3);
}

moray*:::findobjects-done
/fstart[pid, arg0] != 0/
{
	@lat[fbucket[pid, arg0], ffilter[pid, arg0], arg1] =
	    quantize((timestamp - fstart[pid, arg0]) / 1000000);
	fstart[pid, arg0] = 0;
	fbucket[pid, arg0] = 0;
	ffilter[pid, arg0] = 0;
}

END
{
	printa("\n  %s %s %d records (ms)\n%@d", @lat);
}
