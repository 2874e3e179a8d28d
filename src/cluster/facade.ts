/** `pool.cluster`: what a host may ask of this instance's cluster membership, with its arguments checked. */
import { checkTenantId } from '../../common/validate.js';
import type { PoolCluster } from '../pool-types.js';
import type { ClusterMember } from './member.js';

export function clusterFacade(member: ClusterMember): PoolCluster {
  return Object.freeze({
    instanceId: member.instanceId,
    address: member.address,
    ownerOf: async (tenantId: string) => member.ownerOf(checkTenantId(tenantId)),
    route: async (tenantId: string) => member.route(checkTenantId(tenantId)),
    members: async () => member.members(),
    rebalance: async () => member.rebalance(),
  });
}
