import { Etcd3 } from "etcd3";
import t from "tap";
import { startEtcdCluster } from "../../helpers/etcd-cluster.ts";

t.test("a 3-member scratch cluster keeps quorum with one member down", async (t) => {
  const cluster = await startEtcdCluster();
  t.teardown(() => cluster.stop());
  t.equal(cluster.endpoints.length, 3);
  const client = new Etcd3({ hosts: cluster.endpoints });
  t.teardown(() => client.close());
  await client.put("k").value("v1");
  t.equal(await client.get("k").string(), "v1");

  await cluster.members[0]!.stop();
  await client.put("k").value("v2");
  t.equal(await client.get("k").string(), "v2");

  await cluster.members[0]!.start();
  const single = new Etcd3({ hosts: cluster.members[0]!.clientUrl });
  t.teardown(() => single.close());
  t.equal(await single.get("k").string(), "v2", "a restarted member catches up");
});
