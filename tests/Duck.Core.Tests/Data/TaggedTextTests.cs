// Exact text recovery from Brown's tagged form, on sentences taken from the corpus.
using Duck.Core.Data;

namespace Duck.Core.Tests.Data;

public sealed class TaggedTextTests
{
    [Fact]
    public void Detag_FirstBrownSentence_RecoversPlainText()
    {
        const string tagged = "\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn of/in " +
            "Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti " +
            "irregularities/nns took/vbd place/nn ./.";

        string text = TaggedText.Detag(tagged);

        Assert.Equal("The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election " +
            "produced \"no evidence\" that any irregularities took place.", text);
    }

    [Fact]
    public void Detag_QuoteAfterCommaAndBrackets_AttachesPunctuation()
    {
        const string tagged = "the/at City/nn-tl ,/, ``/`` deserves/vbz the/at praise/nn ''/'' (/( of/in 1/2/cd )/) ;/. " +
            "is/bez n't/* it/pps ?/. the/at boys/nns '/' pay/nn ,/, $/nns 5/cd --/-- done/vbn !/.";

        string text = TaggedText.Detag(tagged);

        Assert.Equal("the City, \"deserves the praise\" (of 1/2); isn't it? the boys' pay, $5 -- done!", text);
    }

    [Fact]
    public void Detag_BlocksLinesAndHeadlines_KeepsParagraphs()
    {
        const string tagged = "\n\n\tFirst/od sentence/nn ./.\nSecond/od one/cd ./.\n\n\n\n" +
            "Merger/nn-hl proposed/vbn-hl\nHowever/wrb ,/, yes/rb ./.\n\n";

        string text = TaggedText.Detag(tagged);

        Assert.Equal("First sentence. Second one.\n\nMerger proposed\n\nHowever, yes.", text);
    }

    [Fact]
    public void Detag_DoubledStopsAndAbbreviationPeriod_KeepsOne()
    {
        const string tagged = "the/at European/jj war/nn ;/. ;/.\nit/pps meant/vbd hardship/nn ?/. ?/. won/vbn by/in Ivan/np Allen/np Jr./np ./.";

        string text = TaggedText.Detag(tagged);

        Assert.Equal("the European war; it meant hardship? won by Ivan Allen Jr.", text);
    }

    [Fact]
    public void WordOf_WordContainingSlash_SplitsOnLastSlash()
    {
        Assert.Equal("and/or", TaggedText.WordOf("and/or/cc"));
    }
}
