#!/usr/sbin/dtrace -s
/*
 * del_latency.d: delObject latency in milliseconds, a power-of-two
 * histogram per bucket/key, printed when dtrace exits (^C).
 *
 *   dtrace -s del_latency.d [-p PID]
 *
 *     mybucket/mykey (ms)
 *              value  ------------- Distribution ------------- count
 *                 0 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@ 212
 *                 1 |                                         0
 *
 * delobject-start (arg1 req_id, arg2 bucket, arg3 key) is matched to
 * delobject-done by req_id (arg1), which unlike the per-connection msgid is
 * unique in the process.
 *
 * Linux twin: dtrace/linux/del_latency.bt.
 */

#pragma D option quiet

moray*:::delobject-start
{
	this->rid = copyinstr(arg1);
	lstart[pid, this->rid] = timestamp;
	lbucket[pid, this->rid] = copyinstr(arg2);
	lkey[pid, this->rid] = copyinstr(arg3);
}

moray*:::delobject-done
/lstart[pid, copyinstr(arg1)] != 0/
{
	this->rid = copyinstr(arg1);
	@lat[lbucket[pid, this->rid], lkey[pid, this->rid]] =
	    quantize((timestamp - lstart[pid, this->rid]) / 1000000);
	lstart[pid, this->rid] = 0;
	lbucket[pid, this->rid] = 0;
	lkey[pid, this->rid] = 0;
}

END
{
	printa("\n  %s/%s (ms)\n%@d", @lat);
}
