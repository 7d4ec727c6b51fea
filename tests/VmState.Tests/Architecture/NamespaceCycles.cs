namespace VmState.Tests.Architecture;

/// <summary>Namespace cycles in a set of type references (the root namespace counted as its two layers).</summary>
public static class NamespaceCycles
{
    /// <summary>
    /// Each set of namespaces that reach each other through references (a strongly connected component of more
    /// than one namespace), as its namespaces sorted and joined with ", ".
    /// </summary>
    public static IReadOnlyList<string> Find(IEnumerable<TypeReference> references)
    {
        var edges = new SortedDictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (TypeReference r in references)
        {
            if (!LayerOrder.IsVmState(r.FromNamespace) || !LayerOrder.IsVmState(r.ToNamespace))
            {
                continue;
            }

            string from = LayerOrder.GroupOf(r.From, r.FromNamespace);
            string to = LayerOrder.GroupOf(r.To, r.ToNamespace);
            if (from != to)
            {
                Targets(edges, from).Add(to);
                Targets(edges, to);
            }
        }

        // Tarjan's strongly connected components.
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        var low = new Dictionary<string, int>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        var onStack = new HashSet<string>(StringComparer.Ordinal);
        var cycles = new List<string>();
        void Visit(string v)
        {
            index[v] = low[v] = index.Count;
            stack.Push(v);
            onStack.Add(v);
            foreach (string w in edges[v])
            {
                if (!index.ContainsKey(w))
                {
                    Visit(w);
                    low[v] = Math.Min(low[v], low[w]);
                }
                else if (onStack.Contains(w))
                {
                    low[v] = Math.Min(low[v], index[w]);
                }
            }

            if (low[v] == index[v])
            {
                var component = new List<string>();
                string w;
                do
                {
                    w = stack.Pop();
                    onStack.Remove(w);
                    component.Add(w);
                }
                while (w != v);
                if (component.Count > 1)
                {
                    component.Sort(StringComparer.Ordinal);
                    cycles.Add(string.Join(", ", component));
                }
            }
        }

        foreach (string v in edges.Keys)
        {
            if (!index.ContainsKey(v))
            {
                Visit(v);
            }
        }

        cycles.Sort(StringComparer.Ordinal);
        return cycles;
    }

    private static SortedSet<string> Targets(SortedDictionary<string, SortedSet<string>> edges, string from)
    {
        if (!edges.TryGetValue(from, out SortedSet<string>? set))
        {
            set = new SortedSet<string>(StringComparer.Ordinal);
            edges[from] = set;
        }

        return set;
    }
}
