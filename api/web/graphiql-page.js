// GraphiQL over the hub's /graphql. Put the token in the Headers tab: {"Authorization": "Bearer ..."}.
(function () {
  const fetcher = GraphiQL.createFetcher({ url: "/graphql" });
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: true,
    defaultHeaders: JSON.stringify({ Authorization: "Bearer <paste a token>" }, null, 2),
  }));
})();
