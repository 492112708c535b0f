//! The cluster as one node sees it: `CLUSTER NODES`, parsed into which node
//! serves which partition.

use super::partition::{PARTITIONS, PartitionKeys, slot_of_tag};

/// One Redis node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Redis's 40-character node name.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub master: bool,
    /// Not flagged failed (or suspected), and the answering node's cluster
    /// bus link to it is up.
    pub healthy: bool,
    /// Inclusive slot ranges served (masters only).
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNode {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// Nodes sorted by address, and for each partition the index of its master.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub nodes: Vec<ClusterNode>,
    partition_master: Vec<Option<usize>>,
    counter_master: Option<usize>,
}

impl Topology {
    /// Parses a `CLUSTER NODES` reply. `answered_by` is the host that sent it:
    /// a node may not know its own IP and print `:port@bus` for itself.
    pub fn parse(text: &str, answered_by: &str) -> Result<Topology, String> {
        let mut nodes = Vec::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            nodes.push(parse_line(line, answered_by)?);
        }
        if nodes.is_empty() {
            return Err("CLUSTER NODES listed no node".to_string());
        }
        nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        let master_of = |slot: u16| nodes.iter().position(|n| n.master && n.serves(slot));
        let partition_master = (0..PARTITIONS)
            .map(|p| master_of(PartitionKeys::new(p).slot))
            .collect();
        let counter_master = master_of(slot_of_tag("dc"));
        Ok(Topology {
            nodes,
            partition_master,
            counter_master,
        })
    }

    /// The master serving a partition, if any node claims its slot.
    pub fn partition_master(&self, partition: usize) -> Option<&ClusterNode> {
        let index = (*self.partition_master.get(partition)?)?;
        self.nodes.get(index)
    }

    /// The master serving the version counter's slot.
    pub fn counter_master(&self) -> Option<&ClusterNode> {
        self.nodes.get(self.counter_master?)
    }

    /// The masters of `partitions`, each with its partitions (in the given
    /// order); Err(p) if no node serves partition p's slot.
    pub fn group_by_master(
        &self,
        partitions: &[usize],
    ) -> Result<Vec<(&ClusterNode, Vec<usize>)>, usize> {
        let mut groups: Vec<(&ClusterNode, Vec<usize>)> = Vec::new();
        for &p in partitions {
            let node = self.partition_master(p).ok_or(p)?;
            match groups.iter_mut().find(|(n, _)| n.name == node.name) {
                Some((_, parts)) => parts.push(p),
                None => groups.push((node, vec![p])),
            }
        }
        Ok(groups)
    }

    /// Addresses to ask for the topology next time: healthy masters first
    /// (their view is the freshest), then the other healthy nodes.
    pub fn contact_points(&self) -> Vec<String> {
        let mut nodes: Vec<&ClusterNode> = self.nodes.iter().filter(|n| n.healthy).collect();
        nodes.sort_by_key(|n| !n.master);
        nodes.iter().map(|n| n.addr()).collect()
    }
}

/// `<name> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn parse_line(line: &str, answered_by: &str) -> Result<ClusterNode, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(format!("CLUSTER NODES line has too few fields: {line:?}"));
    }
    let (host, port) = parse_addr(fields[1], answered_by)
        .ok_or_else(|| format!("CLUSTER NODES line has a bad address: {line:?}"))?;
    let flags: Vec<&str> = fields[2].split(',').collect();
    let has = |flag: &str| flags.contains(&flag);
    let failed = has("fail") || has("fail?") || has("handshake") || has("noaddr");
    let linked = has("myself") || fields[7] == "connected";
    Ok(ClusterNode {
        name: fields[0].to_string(),
        host,
        port,
        master: has("master"),
        healthy: !failed && linked,
        slots: fields[8..].iter().filter_map(|s| parse_slots(s)).collect(),
    })
}

fn parse_addr(field: &str, answered_by: &str) -> Option<(String, u16)> {
    let addr = field.split(['@', ',']).next()?;
    let (host, port) = addr.rsplit_once(':')?;
    let host = if host.is_empty() { answered_by } else { host };
    Some((host.to_string(), port.parse().ok()?))
}

/// `5461` or `0-5460`; `[slot->-name]` entries (slots being migrated) are not
/// served yet and give None.
fn parse_slots(field: &str) -> Option<(u16, u16)> {
    if field.starts_with('[') {
        return None;
    }
    match field.split_once('-') {
        Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
        None => {
            let slot = field.parse().ok()?;
            Some((slot, slot))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
7e81 127.0.0.1:7104@17104 slave 5ea4 0 1795840773048 3 connected
a6d9 127.0.0.1:7102@17102 master - 0 1795840773048 2 connected 5461-10922
8b3c :7101@17101 myself,master - 0 1795840772000 1 connected 0-5460 [5460->-a6d9]
2506 127.0.0.1:7105@17105 slave,fail 8b3c 0 1795840773048 1 disconnected
6d0d 127.0.0.1:7106@17106 slave a6d9 0 1795840773048 2 connected
5ea4 127.0.0.1:7103@17103 master - 0 1795840773000 3 connected 10923-16383
";

    #[test]
    fn parses_roles_health_and_partitions() {
        let topology = Topology::parse(NODES, "127.0.0.1").expect("parses");
        let addrs: Vec<String> = topology.nodes.iter().map(|n| n.addr()).collect();
        assert_eq!(addrs[0], "127.0.0.1:7101", "sorted, own address filled in");
        assert_eq!(addrs.len(), 6);
        let masters = topology.nodes.iter().filter(|n| n.master).count();
        assert_eq!(masters, 3);
        let failed: Vec<&str> = topology
            .nodes
            .iter()
            .filter(|n| !n.healthy)
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(failed, ["2506"]);
        // {p1} is slot 11819, served by 7103.
        let p1 = topology.partition_master(1).expect("p1 has a master");
        assert_eq!(p1.port, 7103);
        let all: Vec<usize> = (0..PARTITIONS).collect();
        let groups = topology.group_by_master(&all).expect("all covered");
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups.iter().map(|(_, p)| p.len()).sum::<usize>(),
            PARTITIONS
        );
        assert!(topology.counter_master().is_some());
        assert_eq!(topology.contact_points().len(), 5);
    }

    #[test]
    fn uncovered_slots_have_no_master() {
        let text = "8b3c 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-100\n";
        let topology = Topology::parse(text, "127.0.0.1").expect("parses");
        assert!(topology.partition_master(1).is_none());
        assert_eq!(topology.group_by_master(&[1, 3]), Err(1));
    }

    #[test]
    fn refuses_garbage() {
        assert!(Topology::parse("", "h").is_err());
        assert!(Topology::parse("a b c", "h").is_err());
        assert!(Topology::parse("a nohost master - 0 0 1 connected", "h").is_err());
    }
}
