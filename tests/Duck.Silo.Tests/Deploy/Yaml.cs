// Reading deployment YAML with YamlDotNet's representation model (anchors and aliases resolved): documents as
// mapping nodes and short accessors that fail with the path of what is missing.
using YamlDotNet.RepresentationModel;

namespace Duck.Silo.Tests.Deploy;

static class Yaml
{
    public static List<YamlMappingNode> Load(string repoRelativePath)
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(Path.Combine(Repo.Root, repoRelativePath))) stream.Load(reader);
        return stream.Documents.Select(d => d.RootNode).OfType<YamlMappingNode>().ToList();
    }

    public static YamlNode? Get(this YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next)) return null;
            node = next;
        }
        return node;
    }

    public static string? Text(this YamlNode node, params string[] path) => (node.Get(path) as YamlScalarNode)?.Value;

    public static IEnumerable<YamlNode> Items(this YamlNode node, params string[] path) => node.Get(path) is YamlSequenceNode s ? s.Children : [];

    public static IEnumerable<(string Key, YamlNode Value)> Entries(this YamlNode node, params string[] path) =>
        node.Get(path) is YamlMappingNode m ? m.Children.Select(kv => (((YamlScalarNode)kv.Key).Value!, kv.Value)) : [];

    /// <summary>Every mapping in the tree under <paramref name="node"/>, itself included.</summary>
    public static IEnumerable<YamlMappingNode> Mappings(this YamlNode node)
    {
        if (node is YamlMappingNode m)
        {
            yield return m;
            foreach (var child in m.Children.Values.SelectMany(Mappings)) yield return child;
        }
        else if (node is YamlSequenceNode s)
            foreach (var child in s.Children.SelectMany(Mappings)) yield return child;
    }
}
